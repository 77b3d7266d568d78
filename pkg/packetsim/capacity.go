package packetsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

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
