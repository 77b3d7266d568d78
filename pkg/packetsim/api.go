package packetsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxBody bounds request bodies (userdata included).
const maxBody = 1 << 20

// decodeBody reads a JSON request body into v; false means a 422 was sent.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, required bool) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, "could not read request body: "+err.Error())
		return false
	}
	if len(b) > maxBody {
		writeErr(w, http.StatusUnprocessableEntity, "request body too large")
		return false
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if required {
			writeErr(w, http.StatusUnprocessableEntity, "request body is required")
			return false
		}
		return true
	}
	if err := json.Unmarshal(b, v); err != nil {
		writeErr(w, http.StatusUnprocessableEntity, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// checkProject answers 404 for any project but the simulated one.
func (s *Sim) checkProject(w http.ResponseWriter, id string) bool {
	if strings.ToLower(id) != s.project {
		writeErr(w, http.StatusNotFound, "Not found")
		return false
	}
	return true
}

func (s *Sim) getProject(w http.ResponseWriter, r *http.Request, id string) {
	if !s.checkProject(w, id) {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": s.project, "name": "lkfleet simulator", "href": "/metal/v1/projects/" + s.project,
		"created_at": "2026-01-01T00:00:00.000Z", "updated_at": "2026-01-01T00:00:00.000Z",
		"tags": []string{}, "type": "default", "backend_transfer_enabled": false,
		"customdata": map[string]any{}, "max_devices": map[string]any{}, "network_status": map[string]any{},
	})
}

// createInput is the union of DeviceCreateInMetroInput and
// DeviceCreateInFacilityInput plus the batch fields.
type createInput struct {
	Hostname        string          `json:"hostname"`
	Hostnames       []string        `json:"hostnames"`
	Quantity        int             `json:"quantity"`
	Description     string          `json:"description"`
	Plan            string          `json:"plan"`
	Metro           json.RawMessage `json:"metro"`
	Facility        json.RawMessage `json:"facility"`
	OperatingSystem string          `json:"operating_system"`
	BillingCycle    string          `json:"billing_cycle"`
	AlwaysPXE       bool            `json:"always_pxe"`
	IPXEScriptURL   string          `json:"ipxe_script_url"`
	Userdata        string          `json:"userdata"`
	Tags            []string        `json:"tags"`
	Locked          bool            `json:"locked"`
	Customdata      json.RawMessage `json:"customdata"`
}

// placement is a validated create: where and what.
type placement struct {
	plan       *plan
	candidates []*facility // in preference order
	where      string      // the location as given, for messages
	metro      bool
}

func isIPXE(userdata string) bool {
	return strings.HasPrefix(strings.TrimLeft(userdata, " \t\r\n"), "#!ipxe")
}

// validateCreate checks a create like the service and returns every
// problem found.
func (s *Sim) validateCreate(in *createInput) (placement, []string) {
	var pl placement
	var errs []string
	if in.Plan == "" {
		errs = append(errs, "plan is required")
	} else if p := s.cat.planBy[in.Plan]; p == nil {
		errs = append(errs, fmt.Sprintf("Plan %q is not a valid plan", in.Plan))
	} else {
		pl.plan = p
	}
	hasMetro := len(in.Metro) > 0 && string(in.Metro) != "null"
	hasFac := len(in.Facility) > 0 && string(in.Facility) != "null"
	switch {
	case hasMetro && hasFac:
		errs = append(errs, "Only one of metro or facility may be specified")
	case hasMetro:
		var code string
		if err := json.Unmarshal(in.Metro, &code); err != nil {
			errs = append(errs, "metro must be a string")
			break
		}
		pl.metro, pl.where = true, code
		if code == "any" {
			pl.candidates = s.cat.facilities
		} else if m := s.cat.metroBy[strings.ToLower(code)]; m == nil {
			errs = append(errs, fmt.Sprintf("Metro %q is not a valid metro", code))
		} else {
			for _, f := range s.cat.facilities {
				if f.Metro == m {
					pl.candidates = append(pl.candidates, f)
				}
			}
		}
	case hasFac:
		var codes []string
		var one string
		if err := json.Unmarshal(in.Facility, &one); err == nil {
			codes = []string{one}
		} else if err := json.Unmarshal(in.Facility, &codes); err != nil {
			errs = append(errs, "facility must be a string or an array of strings")
			break
		}
		pl.where = strings.Join(codes, ",")
		for _, c := range codes {
			if c == "any" {
				pl.candidates = append(pl.candidates, s.cat.facilities...)
			} else if f := s.cat.facBy[strings.ToLower(c)]; f == nil {
				errs = append(errs, fmt.Sprintf("Facility %q is not a valid facility", c))
			} else {
				pl.candidates = append(pl.candidates, f)
			}
		}
		if len(codes) == 0 {
			errs = append(errs, "Facility can't be blank")
		}
	default:
		errs = append(errs, "Either metro or facility is required")
	}
	switch {
	case in.OperatingSystem == "":
		errs = append(errs, "operating_system is required")
	case s.cat.osJSON[in.OperatingSystem] == nil:
		errs = append(errs, fmt.Sprintf("Operating system %q is not a valid operating system", in.OperatingSystem))
	case in.OperatingSystem == "custom_ipxe" && in.IPXEScriptURL == "" && !isIPXE(in.Userdata):
		errs = append(errs, "ipxe_script_url is required for custom_ipxe unless userdata starts with #!ipxe")
	}
	if in.IPXEScriptURL != "" {
		if u, err := url.Parse(in.IPXEScriptURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Sprintf("ipxe_script_url %q must be an http(s) URL", in.IPXEScriptURL))
		}
	}
	switch in.BillingCycle {
	case "", "hourly", "daily", "monthly", "yearly":
	default:
		errs = append(errs, fmt.Sprintf("billing_cycle %q must be one of hourly, daily, monthly, yearly", in.BillingCycle))
	}
	for _, t := range in.Tags {
		if t == "" {
			errs = append(errs, "tags may not be empty")
			break
		}
	}
	if pl.plan != nil && len(pl.candidates) > 0 && !slices.ContainsFunc(pl.candidates, func(f *facility) bool { return pl.plan.supports(f.Code) }) {
		errs = append(errs, fmt.Sprintf("Plan %s is not available in %s", pl.plan.Slug, pl.where))
	}
	return pl, errs
}

// errNoCapacity is the service's answer when no facility has room.
type errNoCapacity struct{ where string }

func (e errNoCapacity) Error() string {
	return "There aren't available servers in " + e.where + " for that plan"
}

// addDevice creates one device; the caller holds s.mu.
func (s *Sim) addDevice(in *createInput, pl placement, hostname string, now time.Time) (*device, error) {
	var fac *facility
	for _, f := range pl.candidates {
		if pl.plan.supports(f.Code) && s.capUsed[capKey{f.Code, pl.plan.Slug}] < s.cfg.Capacity {
			fac = f
			break
		}
	}
	if fac == nil {
		return nil, errNoCapacity{pl.where}
	}
	id := s.newID()
	if hostname == "" {
		hostname = "sim-" + id.String()[:8]
	}
	billing := in.BillingCycle
	if billing == "" {
		billing = "hourly"
	}
	s.seq++
	d := &device{
		id: id, seq: s.seq, hostname: hostname, description: in.Description,
		tags: slices.Clone(in.Tags), plan: pl.plan, fac: fac, os: in.OperatingSystem,
		alwaysPXE: in.AlwaysPXE, ipxeURL: in.IPXEScriptURL, userdata: in.Userdata,
		billing: billing, locked: in.Locked, customdata: cloneRaw(in.Customdata),
		created: now, updated: now,
		phase: phProvision, phaseAt: now, phaseDur: s.cfg.ProvisionTime,
		failProv: s.chance(s.cfg.FailProvisionRate),
	}
	s.insert(d)
	if d.failProv {
		s.stats.fault(FaultFailedProvision)
	}
	if d.os == "custom_ipxe" && !d.failProv {
		s.scheduleBoot(d, now.Add(d.phaseDur), false)
	}
	s.stats.created(1)
	s.markDirty()
	return d, nil
}

// insert registers d; the caller holds s.mu.
func (s *Sim) insert(d *device) {
	s.devs[d.id] = d
	s.order = append(s.order, d)
	if d.deletedAt.IsZero() {
		s.capUsed[capKey{d.fac.Code, d.plan.Slug}]++
	}
}

func cloneRaw(b json.RawMessage) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return slices.Clone(b)
}

func (s *Sim) createDevice(w http.ResponseWriter, r *http.Request, pid string) {
	if !s.checkProject(w, pid) {
		return
	}
	var in createInput
	if !decodeBody(w, r, &in, true) {
		return
	}
	pl, errs := s.validateCreate(&in)
	if len(errs) > 0 {
		writeErr(w, http.StatusUnprocessableEntity, errs...)
		return
	}
	now := s.now()
	s.mu.Lock()
	d, err := s.addDevice(&in, pl, in.Hostname, now)
	var j deviceJSON
	if err == nil {
		j = s.render(d, now)
	}
	s.mu.Unlock()
	if err != nil {
		writeErr(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if s.chance(s.cfg.AmbiguousCreateRate) {
		s.ambiguous(w)
		return
	}
	writeJSON(w, http.StatusCreated, j)
}

// ambiguous fails a response whose request did take effect.
func (s *Sim) ambiguous(w http.ResponseWriter) {
	s.stats.fault(FaultAmbiguousCreate)
	switch s.pick(3) {
	case 0:
		writeErr(w, http.StatusInternalServerError, "Oh snap, something went wrong! We've logged the error and will take a look - please reach out to us if you continue having trouble.")
	case 1:
		writeErr(w, http.StatusServiceUnavailable, "Service temporarily unavailable")
	default:
		dropConn(w)
	}
}

func (s *Sim) createBatch(w http.ResponseWriter, r *http.Request, pid string) {
	if !s.checkProject(w, pid) {
		return
	}
	var in struct {
		Batches []createInput `json:"batches"`
	}
	if !decodeBody(w, r, &in, true) {
		return
	}
	if len(in.Batches) == 0 {
		writeErr(w, http.StatusUnprocessableEntity, "batches is required")
		return
	}
	pls := make([]placement, len(in.Batches))
	var errs []string
	for i := range in.Batches {
		b := &in.Batches[i]
		pl, e := s.validateCreate(b)
		for _, m := range e {
			errs = append(errs, fmt.Sprintf("batches[%d]: %s", i, m))
		}
		if b.Quantity <= 0 {
			b.Quantity = max(1, len(b.Hostnames))
		}
		if b.Quantity > 1000 {
			errs = append(errs, fmt.Sprintf("batches[%d]: quantity must be at most 1000", i))
		}
		pls[i] = pl
	}
	if len(errs) > 0 {
		writeErr(w, http.StatusUnprocessableEntity, errs...)
		return
	}
	now := s.now()
	type batchJSON struct {
		ID            string     `json:"id"`
		State         string     `json:"state"`
		Quantity      int        `json:"quantity"`
		CreatedAt     string     `json:"created_at"`
		UpdatedAt     string     `json:"updated_at"`
		Devices       []hrefJSON `json:"devices"`
		ErrorMessages []string   `json:"error_messages"`
		Project       hrefJSON   `json:"project"`
	}
	out := make([]batchJSON, 0, len(in.Batches))
	s.mu.Lock()
	for i := range in.Batches {
		b := &in.Batches[i]
		bj := batchJSON{ID: s.newID().String(), State: "completed", Quantity: b.Quantity, CreatedAt: fmtTime(now), UpdatedAt: fmtTime(now),
			Devices: []hrefJSON{}, ErrorMessages: []string{}, Project: hrefJSON{"/metal/v1/projects/" + s.project}}
		for k := range b.Quantity {
			host := b.Hostname
			if k < len(b.Hostnames) {
				host = b.Hostnames[k]
			}
			host = strings.ReplaceAll(host, "{{index}}", fmt.Sprintf("%02d", k+1))
			d, err := s.addDevice(b, pls[i], host, now)
			if err != nil {
				bj.State = "failed"
				bj.ErrorMessages = append(bj.ErrorMessages, err.Error())
				break
			}
			bj.Devices = append(bj.Devices, hrefJSON{deviceHref(d.id.String())})
		}
		out = append(out, bj)
	}
	s.mu.Unlock()
	if s.chance(s.cfg.AmbiguousCreateRate) {
		s.ambiguous(w)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"batches": out})
}

// paging parses page and per_page like the service (422 when invalid).
func paging(w http.ResponseWriter, q url.Values) (page, perPage int, ok bool) {
	page, perPage = 1, 10
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			writeErr(w, http.StatusUnprocessableEntity, "page must be an integer between 1 and 100000")
			return 0, 0, false
		}
		page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			writeErr(w, http.StatusUnprocessableEntity, "per_page must be an integer between 1 and 1000")
			return 0, 0, false
		}
		perPage = n
	}
	return page, perPage, true
}

// extraQuery keeps the request's parameters other than paging, raw and in
// order, for meta hrefs.
func extraQuery(raw string) string {
	var keep []string
	for _, kv := range strings.Split(raw, "&") {
		k, _, _ := strings.Cut(kv, "=")
		if kv == "" || k == "page" || k == "per_page" {
			continue
		}
		keep = append(keep, kv)
	}
	return strings.Join(keep, "&")
}

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
	ex := excludeSet(q)
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
			j := s.render(d, now)
			buf, _ = j.appendListed(buf, ex) // cannot fail: plain strings and numbers
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
	now := s.now()
	s.mu.RLock()
	d := s.lookup(w, id, now)
	var j deviceJSON
	if d != nil {
		j = s.render(d, now)
	}
	s.mu.RUnlock()
	if d != nil {
		writeJSON(w, http.StatusOK, j)
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
	j := s.render(d, now)
	s.markDirty()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, j)
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
	defer s.mu.Unlock()
	d := s.lookup(w, id, now)
	if d == nil {
		return
	}
	if d.locked {
		writeErr(w, http.StatusUnprocessableEntity, "Cannot delete a locked device; unlock it first")
		return
	}
	if d.deletedAt.IsZero() {
		d.deletedAt = now
		d.updated = now
		d.gen++
		d.bootAt = time.Time{}
		s.capUsed[capKey{d.fac.Code, d.plan.Slug}]--
		s.sched.add(job{at: now.Add(s.cfg.DeprovisionTime), dev: d.id, kind: jobPurge})
		s.markDirty()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Sim) deviceAction(w http.ResponseWriter, r *http.Request, id string) {
	var in struct {
		Type            string `json:"type"`
		IPXEScriptURL   string `json:"ipxe_script_url"`
		OperatingSystem string `json:"operating_system"`
	}
	if !decodeBody(w, r, &in, true) {
		return
	}
	switch in.Type {
	case "reboot", "reinstall", "power_on", "power_off":
	case "":
		writeErr(w, http.StatusUnprocessableEntity, "type is required")
		return
	case "rescue":
		writeErr(w, http.StatusUnprocessableEntity, "rescue is not available for custom_ipxe devices")
		return
	default:
		writeErr(w, http.StatusUnprocessableEntity, fmt.Sprintf("type %q must be one of power_on, power_off, reboot, reinstall, rescue", in.Type))
		return
	}
	if in.OperatingSystem != "" && s.cat.osJSON[in.OperatingSystem] == nil {
		writeErr(w, http.StatusUnprocessableEntity, fmt.Sprintf("Operating system %q is not a valid operating system", in.OperatingSystem))
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.lookup(w, id, now)
	if d == nil {
		return
	}
	st := d.state(now, s.cfg.DeprovisionTime)
	short := s.cfg.ProvisionTime / 5
	bad := func() {
		writeErr(w, http.StatusUnprocessableEntity, fmt.Sprintf("Cannot %s a device that is %s", strings.ReplaceAll(in.Type, "_", " "), st))
	}
	switch in.Type {
	case "reboot":
		if st != "active" {
			bad()
			return
		}
		d.setPhase(phActive, now, 0)
		s.scheduleBoot(d, now.Add(short), !d.alwaysPXE)
	case "power_off":
		if st != "active" && st != "failed" {
			bad()
			return
		}
		d.setPhase(phPowerOff, now, short)
	case "power_on":
		if st != "inactive" {
			bad()
			return
		}
		d.setPhase(phPowerOn, now, short)
		s.scheduleBoot(d, now.Add(short), !d.alwaysPXE)
	case "reinstall":
		if st != "active" && st != "inactive" && st != "failed" {
			bad()
			return
		}
		if in.OperatingSystem != "" {
			d.os = in.OperatingSystem
		}
		if in.IPXEScriptURL != "" {
			d.ipxeURL = in.IPXEScriptURL
		}
		d.setPhase(phReinstall, now, s.cfg.ProvisionTime)
		if d.os == "custom_ipxe" {
			s.scheduleBoot(d, now.Add(s.cfg.ProvisionTime), false)
		}
	}
	d.updated = now
	s.markDirty()
	w.WriteHeader(http.StatusAccepted)
}

// setPhase starts a lifecycle step and invalidates pending jobs.
func (d *device) setPhase(p phase, now time.Time, dur time.Duration) {
	d.phase, d.phaseAt, d.phaseDur = p, now, dur
	d.failProv = false
	d.gen++
	d.bootAt = time.Time{}
}

func (s *Sim) deviceEvents(w http.ResponseWriter, r *http.Request, id string) {
	page, perPage, ok := paging(w, r.URL.Query())
	if !ok {
		return
	}
	now := s.now()
	s.mu.RLock()
	d := s.lookup(w, id, now)
	var evs []event
	var did string
	if d != nil {
		evs, did = d.events, d.id.String()
	}
	s.mu.RUnlock()
	if d == nil {
		return
	}
	all := renderEvents(evs, deviceHref(did))
	from := min((page-1)*perPage, len(all))
	to := min(from+perPage, len(all))
	writeJSON(w, http.StatusOK, map[string]any{
		"events": all[from:to],
		"meta":   pageMeta("/metal/v1/devices/"+did+"/events", extraQuery(r.URL.RawQuery), page, perPage, len(all)),
	})
}

func (s *Sim) listFacilities(w http.ResponseWriter, r *http.Request, _ string) {
	out := make([]json.RawMessage, 0, len(s.cat.facilities))
	for _, f := range s.cat.facilities {
		out = append(out, f.json)
	}
	writeJSON(w, http.StatusOK, map[string]any{"facilities": out})
}

func (s *Sim) listMetros(w http.ResponseWriter, r *http.Request, _ string) {
	out := make([]json.RawMessage, 0, len(s.cat.metros))
	for _, m := range s.cat.metros {
		out = append(out, m.json)
	}
	writeJSON(w, http.StatusOK, map[string]any{"metros": out})
}

func (s *Sim) listPlans(w http.ResponseWriter, r *http.Request, _ string) {
	slug := r.URL.Query().Get("slug")
	out := make([]json.RawMessage, 0, len(s.cat.plans))
	for _, p := range s.cat.plans {
		if slug == "" || p.Slug == slug {
			out = append(out, p.json)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"plans": out})
}

// level names a pool's free servers like the service does.
func level(avail int) string {
	switch {
	case avail <= 0:
		return "unavailable"
	case avail < 10:
		return "limited"
	}
	return "normal"
}

// getCapacity reports capacity per facility (or metro) and plan.
func (s *Sim) getCapacity(metros bool) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, _ string) {
		out := map[string]map[string]map[string]any{}
		s.mu.RLock()
		for _, p := range s.cat.plans {
			for _, code := range p.Facilities {
				f := s.cat.facBy[code]
				avail := s.cfg.Capacity - s.capUsed[capKey{code, p.Slug}]
				loc := code
				if metros {
					loc = f.Metro.Code
				}
				if out[loc] == nil {
					out[loc] = map[string]map[string]any{}
				}
				e := out[loc][p.Slug]
				if e == nil {
					e = map[string]any{"available_servers": 0}
					out[loc][p.Slug] = e
				}
				e["available_servers"] = min(e["available_servers"].(int)+avail, DefaultCapacity)
				e["level"] = level(e["available_servers"].(int))
				if !metros {
					delete(e, "available_servers")
				}
			}
		}
		s.mu.RUnlock()
		writeJSON(w, http.StatusOK, map[string]any{"capacity": out})
	}
}

// available counts free servers of plan p at a facility or metro code.
func (s *Sim) available(p *plan, loc string, metro bool) int {
	n := 0
	for _, code := range p.Facilities {
		f := s.cat.facBy[code]
		if (metro && f.Metro.Code == loc) || (!metro && code == loc) {
			n += s.cfg.Capacity - s.capUsed[capKey{code, p.Slug}]
		}
	}
	return n
}

// checkCapacity answers POST /capacity and /capacity/metros.
func (s *Sim) checkCapacity(metros bool) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, _ string) {
		var in struct {
			Servers []struct {
				Facility string          `json:"facility"`
				Metro    string          `json:"metro"`
				Plan     string          `json:"plan"`
				Quantity json.RawMessage `json:"quantity"`
			} `json:"servers"`
		}
		if !decodeBody(w, r, &in, true) {
			return
		}
		var errs []string
		out := make([]map[string]any, 0, len(in.Servers))
		s.mu.RLock()
		for i, sv := range in.Servers {
			loc, key := sv.Facility, "facility"
			if metros {
				loc, key = sv.Metro, "metro"
			}
			q := strings.Trim(string(sv.Quantity), `"`)
			n, err := strconv.Atoi(q)
			p := s.cat.planBy[sv.Plan]
			switch {
			case p == nil:
				errs = append(errs, fmt.Sprintf("servers[%d]: Plan %q is not a valid plan", i, sv.Plan))
			case metros && s.cat.metroBy[loc] == nil:
				errs = append(errs, fmt.Sprintf("servers[%d]: Metro %q is not a valid metro", i, loc))
			case !metros && s.cat.facBy[loc] == nil:
				errs = append(errs, fmt.Sprintf("servers[%d]: Facility %q is not a valid facility", i, loc))
			case err != nil || n < 1:
				errs = append(errs, fmt.Sprintf("servers[%d]: quantity must be a positive integer", i))
			default:
				out = append(out, map[string]any{key: loc, "plan": sv.Plan, "quantity": q, "available": s.available(p, loc, metros) >= n})
			}
		}
		s.mu.RUnlock()
		if len(errs) > 0 {
			writeErr(w, http.StatusUnprocessableEntity, errs...)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"servers": out})
	}
}
