package packetsim

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// projectMeta is the simulated project's mutable part. It is guarded by
// s.mu and kept in the state file: the lease that keeps two applies apart
// lives in its customdata.
type projectMeta struct {
	name       string
	tags       []string
	customdata json.RawMessage
	updated    time.Time
}

// projectCreated is the fixed creation time of the simulated project.
var projectCreated = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// projectCollapsed are the project attributes answered as hrefs unless
// included.
var projectCollapsed = map[string]bool{"organization": true, "payment_method": true, "ssh_keys": true}

// checkProject answers 404 for any project but the simulated one.
func (s *Sim) checkProject(w http.ResponseWriter, id string) bool {
	if strings.ToLower(id) != s.project {
		writeErr(w, http.StatusNotFound, "Not found")
		return false
	}
	return true
}

func (s *Sim) projectHref() string { return "/metal/v1/projects/" + s.project }

// projectHrefJSON is the project reference every device carries, rendered
// once: listings embed it in every device.
func (s *Sim) projectHrefJSON() json.RawMessage {
	s.projRefOnce.Do(func() { s.projRef = mustJSON(hrefJSON{s.projectHref()}) })
	return s.projRef
}

// projectLiteJSON is project_lite when included; the caller holds s.mu.
func (s *Sim) projectLiteJSON() json.RawMessage {
	return mustJSON(map[string]string{"id": s.project, "name": s.proj.name, "href": s.projectHref()})
}

// projectDoc is the whole project, its keys whole; the caller holds s.mu.
func (s *Sim) projectDoc() map[string]any {
	p := s.proj
	custom := p.customdata
	if custom == nil {
		custom = emptyObject
	}
	tags := p.tags
	if tags == nil {
		tags = []string{}
	}
	org := "/metal/v1/organizations/" + nameID("organization:"+s.project).String()
	return map[string]any{
		"id": s.project, "name": p.name, "href": s.projectHref(),
		"created_at": fmtTime(projectCreated), "updated_at": fmtTime(p.updated),
		"tags": tags, "type": "default", "backend_transfer_enabled": false,
		"customdata": custom, "max_devices": map[string]any{}, "network_status": map[string]any{},
		"organization":   map[string]any{"href": org},
		"payment_method": map[string]any{"href": "/metal/v1/payment-methods/" + nameID("payment:"+s.project).String()},
		"ssh_keys":       s.sshKeysJSON(true),
		"members":        []any{}, "memberships": []any{}, "invitations": []any{}, "volumes": []any{},
	}
}

// projectFullJSON is the project as include=project answers it.
func (s *Sim) projectFullJSON() json.RawMessage { return mustJSON(s.projectDoc()) }

func (s *Sim) getProject(w http.ResponseWriter, r *http.Request, id string) {
	if !s.checkProject(w, id) {
		return
	}
	sh := parseShaping(r.URL.Query(), true)
	s.mu.RLock()
	doc := sh.shapeJSON(s.projectDoc(), projectCollapsed)
	s.mu.RUnlock()
	writeRaw(w, http.StatusOK, doc)
}

// listProjects answers GET /projects: the one project, filtered by name.
func (s *Sim) listProjects(w http.ResponseWriter, r *http.Request, _ string) {
	q := r.URL.Query()
	page, perPage, ok := paging(w, q)
	if !ok {
		return
	}
	sh := parseShaping(q, true)
	var items []any
	s.mu.RLock()
	if name := q.Get("name"); name == "" || strings.Contains(strings.ToLower(s.proj.name), strings.ToLower(name)) {
		items = append(items, s.projectDoc())
	}
	s.mu.RUnlock()
	total := len(items)
	from := min((page-1)*perPage, total)
	items = items[from:min(from+perPage, total)]
	if items == nil {
		items = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"projects": json.RawMessage(sh.shapeJSON(items, projectCollapsed)),
		"meta":     pageMeta("/metal/v1/projects", extraQuery(r.URL.RawQuery), page, perPage, total),
	})
}

// updateProject answers PUT /projects/{id}: name, tags and customdata
// (replaced whole, as the service does).
func (s *Sim) updateProject(w http.ResponseWriter, r *http.Request, id string) {
	if !s.checkProject(w, id) {
		return
	}
	var in struct {
		Name                   *string         `json:"name"`
		Tags                   *[]string       `json:"tags"`
		Customdata             json.RawMessage `json:"customdata"`
		BackendTransferEnabled *bool           `json:"backend_transfer_enabled"`
	}
	if !decodeBody(w, r, &in, true) {
		return
	}
	var errs []string
	if in.Name != nil && (*in.Name == "" || utf8.RuneCountInString(*in.Name) > 80) {
		errs = append(errs, "name must be 1 to 80 characters")
	}
	if c := cloneRaw(in.Customdata); c != nil && c[0] != '{' {
		errs = append(errs, "customdata must be an object")
	}
	if len(errs) > 0 {
		writeErr(w, http.StatusUnprocessableEntity, errs...)
		return
	}
	sh := parseShaping(r.URL.Query(), true)
	s.mu.Lock()
	if in.Name != nil {
		s.proj.name = *in.Name
	}
	if in.Tags != nil {
		s.proj.tags = slices.Clone(*in.Tags)
	}
	if c := cloneRaw(in.Customdata); c != nil {
		s.proj.customdata = c
	}
	s.proj.updated = s.now()
	doc := sh.shapeJSON(s.projectDoc(), projectCollapsed)
	s.markDirty()
	s.mu.Unlock()
	if !s.saved(w) {
		return
	}
	writeRaw(w, http.StatusOK, doc)
}

// DeviceProject returns the project of a device that still answers (not
// purged); the SOS console uses it to pick the keys it accepts.
func (s *Sim) DeviceProject(id string) (string, bool) {
	u, ok := parseUUID(strings.ToLower(id))
	if !ok {
		return "", false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if d := s.devs[u]; d != nil && !d.goneAt(s.now(), s.cfg.DeprovisionTime) {
		return s.project, true
	}
	return "", false
}
