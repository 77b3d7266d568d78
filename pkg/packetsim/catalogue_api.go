package packetsim

import (
	"encoding/json"
	"net/http"
)

func (s *Sim) listFacilities(w http.ResponseWriter, r *http.Request, _ string) {
	out := make([]json.RawMessage, 0, len(s.cat.facilities))
	for _, f := range s.cat.facilities {
		out = append(out, f.json)
	}
	sh := parseShaping(r.URL.Query(), true)
	writeJSON(w, http.StatusOK, map[string]any{"facilities": json.RawMessage(sh.shapeJSON(out, nil))})
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
	sh := parseShaping(r.URL.Query(), true)
	writeJSON(w, http.StatusOK, map[string]any{"plans": json.RawMessage(sh.shapeJSON(out, nil))})
}

// listOperatingSystems answers GET /operating-systems.
func (s *Sim) listOperatingSystems(w http.ResponseWriter, r *http.Request, _ string) {
	writeJSON(w, http.StatusOK, map[string]any{"operating_systems": s.cat.osList})
}
