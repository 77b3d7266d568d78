package packetsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

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
	var doc json.RawMessage
	if err == nil {
		doc = s.deviceDoc(d, now, parseShaping(r.URL.Query(), true))
	}
	s.mu.Unlock()
	if err != nil {
		writeErr(w, createStatus(err), err.Error())
		return
	}
	// The device exists once the state file says so: a simulator killed
	// after this answer still has it.
	if !s.saved(w) {
		return
	}
	if s.chance(s.cfg.AmbiguousCreateRate) {
		s.ambiguous(w)
		return
	}
	writeRaw(w, http.StatusCreated, doc)
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

// maxBatchDevices caps the devices one batch request creates, over all
// its batches: without it one 118 KB request could ask for a million.
const maxBatchDevices = 100

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
	total := 0
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
		if b.Quantity > maxBatchDevices {
			errs = append(errs, fmt.Sprintf("batches[%d]: quantity must be at most %d", i, maxBatchDevices))
		}
		total += b.Quantity
		pls[i] = pl
	}
	if total > maxBatchDevices {
		errs = append(errs, fmt.Sprintf("a batch request may create at most %d devices, this one asks for %d", maxBatchDevices, total))
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
	if !s.saved(w) {
		return
	}
	if s.chance(s.cfg.AmbiguousCreateRate) {
		s.ambiguous(w)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"batches": out})
}
