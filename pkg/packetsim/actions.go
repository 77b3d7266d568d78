package packetsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

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
	if s.act(w, id, in.Type, in.OperatingSystem, in.IPXEScriptURL) {
		s.answerSaved(w, http.StatusAccepted)
	}
}

// act starts action typ on device id; false means an error was answered.
func (s *Sim) act(w http.ResponseWriter, id, typ, os, ipxeURL string) bool {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.lookup(w, id, now)
	if d == nil {
		return false
	}
	st := d.state(now, s.cfg.DeprovisionTime)
	short := s.cfg.ProvisionTime / 5
	bad := func() {
		writeErr(w, http.StatusUnprocessableEntity, fmt.Sprintf("Cannot %s a device that is %s", strings.ReplaceAll(typ, "_", " "), st))
	}
	switch typ {
	case "reboot":
		if st != "active" {
			bad()
			return false
		}
		d.setPhase(phActive, now, 0)
		s.scheduleBoot(d, now.Add(short), !d.alwaysPXE)
	case "power_off":
		if st != "active" && st != "failed" {
			bad()
			return false
		}
		d.setPhase(phPowerOff, now, short)
	case "power_on":
		if st != "inactive" {
			bad()
			return false
		}
		d.setPhase(phPowerOn, now, short)
		s.scheduleBoot(d, now.Add(short), !d.alwaysPXE)
	case "reinstall":
		if st != "active" && st != "inactive" && st != "failed" {
			bad()
			return false
		}
		if os != "" {
			d.os = os
		}
		if ipxeURL != "" {
			d.ipxeURL = ipxeURL
		}
		d.setPhase(phReinstall, now, s.cfg.ProvisionTime)
		if d.os == "custom_ipxe" {
			s.scheduleBoot(d, now.Add(s.cfg.ProvisionTime), false)
		}
	}
	d.updated = now
	s.markDirty()
	return true
}

// setPhase starts a lifecycle step and invalidates pending jobs.
func (d *device) setPhase(p phase, now time.Time, dur time.Duration) {
	d.phase, d.phaseAt, d.phaseDur = p, now, dur
	if d.failProv {
		// The provision that was to fail did not end: neither does its
		// event, recorded ahead.
		d.events = slices.DeleteFunc(slices.Clone(d.events), func(e event) bool { return e.typ == eventProvisionFailed && e.at.After(now) })
	}
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
	all := renderEvents(evs, deviceHref(did), now)
	from := min((page-1)*perPage, len(all))
	to := min(from+perPage, len(all))
	sh := parseShaping(r.URL.Query(), true)
	writeJSON(w, http.StatusOK, map[string]any{
		"events": json.RawMessage(sh.shapeJSON(all[from:to], nil)),
		"meta":   pageMeta("/metal/v1/devices/"+did+"/events", extraQuery(r.URL.RawQuery), page, perPage, len(all)),
	})
}
