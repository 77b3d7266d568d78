package packetsim

// PLACEHOLDER — delete this file when the sim branch (issue 15) is merged.
// It holds minimal stand-ins for three methods that branch builds, with
// exactly its signatures, so that the sos branch compiles and its tests
// run. Nothing else may depend on what these stand-ins do beyond their
// signatures, except the test seeding described on ProjectSSHKeys.

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
)

// MetadataHandler serves the metadata service for one device (placeholder:
// GET /metadata with a few fields, GET /userdata, POST /events recording a
// user_state event, POST /phone-home).
func (s *Sim) MetadataHandler(deviceID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := parseUUID(deviceID)
		if !ok {
			http.NotFound(w, r)
			return
		}
		base := "http://" + r.Host
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/metadata":
			s.mu.RLock()
			d := s.devs[id]
			var host string
			if d != nil {
				host = d.hostname
			}
			s.mu.RUnlock()
			if d == nil {
				http.NotFound(w, r)
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{
				"id": deviceID, "hostname": host,
				"user_state_url": base + "/events", "phone_home_url": base + "/phone-home",
			})
		case r.Method == http.MethodGet && r.URL.Path == "/userdata":
			s.mu.RLock()
			d := s.devs[id]
			var ud string
			if d != nil {
				ud = d.userdata
			}
			s.mu.RUnlock()
			io.WriteString(w, ud)
		case r.Method == http.MethodPost && r.URL.Path == "/events":
			var in struct {
				State   string `json:"state"`
				Code    int    `json:"code"`
				Message string `json:"message"`
			}
			if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&in); err != nil {
				writeErr(w, http.StatusUnprocessableEntity, "bad user state: "+err.Error())
				return
			}
			s.mu.Lock()
			d := s.devs[id]
			if d != nil {
				d.events = append(d.events[:len(d.events):len(d.events)], event{id: s.newID(), at: s.now(), typ: "user_state", state: in.State, body: in.Message})
				s.markDirty()
			}
			s.mu.Unlock()
			if d == nil {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		case r.Method == http.MethodPost && r.URL.Path == "/phone-home":
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	})
}

// ProjectSSHKeys returns the authorized_keys lines registered in a project
// (placeholder: the lines of the environment variable
// LKFLEET_SIM_PLACEHOLDER_SSH_KEYS for the simulator's project, which the
// sos branch's tests set because the ssh-keys route is not on this branch).
func (s *Sim) ProjectSSHKeys(projectID string) []string {
	if projectID != s.project {
		return nil
	}
	var out []string
	for _, l := range strings.Split(os.Getenv("LKFLEET_SIM_PLACEHOLDER_SSH_KEYS"), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// DeviceProject returns the project of a device the simulator knows.
func (s *Sim) DeviceProject(id string) (string, bool) {
	u, ok := parseUUID(id)
	if !ok {
		return "", false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.devs[u] == nil {
		return "", false
	}
	return s.project, true
}
