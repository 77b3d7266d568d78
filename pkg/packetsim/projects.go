package packetsim

import (
	"net/http"
	"strings"
)

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
