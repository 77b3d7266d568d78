package packetsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

func (s *Sim) listDevices(w http.ResponseWriter, r *http.Request, pid string) {
	if !s.checkProject(w, pid) {
		return
	}
	q := r.URL.Query()
	page, perPage, ok := paging(w, q)
	if !ok {
		return
	}
	tag, host := q.Get("tag"), q.Get("hostname")
	fac, met := strings.ToLower(q.Get("facility")), strings.ToLower(q.Get("metro"))
	sh := parseShaping(q, true)
	now := s.now()
	lagCut := now.Add(-s.cfg.ListLag)
	buf := make([]byte, 0, 64<<10)
	buf = append(buf, `{"devices":[`...)
	n, total := 0, 0
	from := (page - 1) * perPage
	s.mu.RLock()
	for _, d := range s.order {
		if d.goneAt(now, s.cfg.DeprovisionTime) ||
			(s.cfg.ListLag > 0 && d.created.After(lagCut)) ||
			(tag != "" && !d.hasTag(tag)) ||
			(host != "" && !strings.Contains(d.hostname, host)) ||
			(fac != "" && d.fac.Code != fac) ||
			(met != "" && d.fac.Metro.Code != met) {
			continue
		}
		if total >= from && total < from+perPage {
			if n > 0 {
				buf = append(buf, ',')
			}
			buf = s.appendDevice(buf, d, now, sh)
			n++
		}
		total++
	}
	s.mu.RUnlock()
	meta, _ := json.Marshal(pageMeta("/metal/v1/projects/"+s.project+"/devices", extraQuery(r.URL.RawQuery), page, perPage, total))
	buf = append(buf, `],"meta":`...)
	buf = append(buf, meta...)
	writeRaw(w, http.StatusOK, append(buf, '}'))
}

// lookup finds a live device by id or answers 404.
func (s *Sim) lookup(w http.ResponseWriter, id string, now time.Time) *device {
	u, ok := parseUUID(id)
	if ok {
		if d := s.devs[u]; d != nil && !d.goneAt(now, s.cfg.DeprovisionTime) {
			return d
		}
	}
	writeErr(w, http.StatusNotFound, "Not found")
	return nil
}

func (s *Sim) getDevice(w http.ResponseWriter, r *http.Request, id string) {
	sh := parseShaping(r.URL.Query(), true)
	now := s.now()
	s.mu.RLock()
	d := s.lookup(w, id, now)
	var doc json.RawMessage
	if d != nil {
		doc = s.deviceDoc(d, now, sh)
	}
	s.mu.RUnlock()
	if d != nil {
		writeRaw(w, http.StatusOK, doc)
	}
}

func (s *Sim) updateDevice(w http.ResponseWriter, r *http.Request, id string) {
	var in struct {
		Hostname      *string         `json:"hostname"`
		Description   *string         `json:"description"`
		Tags          *[]string       `json:"tags"`
		AlwaysPXE     *bool           `json:"always_pxe"`
		IPXEScriptURL *string         `json:"ipxe_script_url"`
		Userdata      *string         `json:"userdata"`
		BillingCycle  *string         `json:"billing_cycle"`
		Locked        *bool           `json:"locked"`
		Customdata    json.RawMessage `json:"customdata"`
	}
	if !decodeBody(w, r, &in, true) {
		return
	}
	var errs []string
	if in.Hostname != nil && *in.Hostname == "" {
		errs = append(errs, "hostname can't be blank")
	}
	if in.Tags != nil && slices.Contains(*in.Tags, "") {
		errs = append(errs, "tags may not be empty")
	}
	if in.IPXEScriptURL != nil && *in.IPXEScriptURL != "" {
		if u, err := url.Parse(*in.IPXEScriptURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			errs = append(errs, fmt.Sprintf("ipxe_script_url %q must be an http(s) URL", *in.IPXEScriptURL))
		}
	}
	if len(errs) > 0 {
		writeErr(w, http.StatusUnprocessableEntity, errs...)
		return
	}
	now := s.now()
	s.mu.Lock()
	d := s.lookup(w, id, now)
	if d == nil {
		s.mu.Unlock()
		return
	}
	if !d.deletedAt.IsZero() {
		s.mu.Unlock()
		writeErr(w, http.StatusUnprocessableEntity, "Device is deprovisioning and cannot be updated")
		return
	}
	if in.Hostname != nil {
		d.hostname = *in.Hostname
	}
	if in.Description != nil {
		d.description = *in.Description
	}
	if in.Tags != nil {
		d.tags = slices.Clone(*in.Tags)
	}
	if in.AlwaysPXE != nil {
		d.alwaysPXE = *in.AlwaysPXE
	}
	if in.IPXEScriptURL != nil {
		d.ipxeURL = *in.IPXEScriptURL
	}
	if in.Userdata != nil {
		d.userdata = *in.Userdata
	}
	if in.BillingCycle != nil {
		d.billing = *in.BillingCycle
	}
	if in.Locked != nil {
		d.locked = *in.Locked
	}
	if c := cloneRaw(in.Customdata); c != nil {
		d.customdata = c
	}
	d.updated = now
	doc := s.deviceDoc(d, now, parseShaping(r.URL.Query(), true))
	s.markDirty()
	s.mu.Unlock()
	if !s.saved(w) {
		return
	}
	writeRaw(w, http.StatusOK, doc)
}

func (s *Sim) deleteDevice(w http.ResponseWriter, r *http.Request, id string) {
	// force_delete may come as a query parameter or in a JSON body
	// (packngo sends the body); it changes nothing here.
	var body struct {
		ForceDelete bool `json:"force_delete"`
	}
	if !decodeBody(w, r, &body, false) {
		return
	}
	now := s.now()
	s.mu.Lock()
	d := s.lookup(w, id, now)
	if d == nil {
		s.mu.Unlock()
		return
	}
	if d.locked {
		s.mu.Unlock()
		writeErr(w, http.StatusUnprocessableEntity, "Cannot delete a locked device; unlock it first")
		return
	}
	if d.deletedAt.IsZero() {
		s.markDeleted(d, now)
	}
	s.mu.Unlock()
	s.answerSaved(w, http.StatusNoContent)
}

// markDeleted starts d's deprovisioning (a DELETE, or a spot
// termination); the caller holds s.mu.
func (s *Sim) markDeleted(d *device, now time.Time) {
	d.deletedAt = now
	d.updated = now
	d.gen++
	d.bootAt = time.Time{}
	if s.hw.devRes[d.id] == nil { // reserved devices are outside the pool
		s.capUsed[capKey{d.fac.Code, d.plan.Slug}]--
	}
	s.sched.add(job{at: now.Add(s.cfg.DeprovisionTime), dev: d.id, kind: jobPurge})
	s.markDirty()
}

// answerSaved answers status once the request's change is in the state
// file: a simulator killed after the answer still has it.
func (s *Sim) answerSaved(w http.ResponseWriter, status int) {
	if s.saved(w) {
		w.WriteHeader(status)
	}
}

// saved waits until the request's change is in the state file (without
// --state at once) and answers 500 when it could not be written: the one
// place every changing route waits before its answer.
func (s *Sim) saved(w http.ResponseWriter) bool {
	if err := s.waitSaved(); err != nil {
		writeErr(w, http.StatusInternalServerError, fmt.Sprintf("could not save the simulator state: %v", err))
		return false
	}
	return true
}

// deviceIPs answers GET /devices/{id}/ips.
func (s *Sim) deviceIPs(w http.ResponseWriter, r *http.Request, id string) {
	sh := parseShaping(r.URL.Query(), true)
	now := s.now()
	s.mu.RLock()
	d := s.lookup(w, id, now)
	var ips []ipJSON
	if d != nil {
		ips = s.renderIPs(d, d.id.String(), deviceHref(d.id.String()))
	}
	s.mu.RUnlock()
	if d != nil {
		writeJSON(w, http.StatusOK, map[string]any{"ip_addresses": json.RawMessage(sh.shapeJSON(ips, ipCollapsed))})
	}
}

// ipCollapsed: an address's assigned_to is an href unless included.
var ipCollapsed = map[string]bool{"assigned_to": true}
