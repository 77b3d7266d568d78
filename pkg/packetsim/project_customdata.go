package packetsim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
)

// maxCustomdata bounds a project's customdata. The service documents no
// limit; 64 KiB is far above what lkfleet's lease (a few hundred bytes per
// fleet) needs and keeps a careless client from growing the simulator.
const maxCustomdata = 64 << 10

// projectCustomdata is the project's customdata object, as PUT
// /projects/{id} last wrote it. It is not part of the --state file: it is
// where lkfleet keeps its apply leases, which expire on their own.
type projectCustomdata struct {
	mu   sync.Mutex
	data json.RawMessage // a JSON object; nil means {}
}

// get returns the customdata as the project's answer carries it.
func (c *projectCustomdata) get() json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.data == nil {
		return json.RawMessage("{}")
	}
	return c.data
}

// updateProject serves PUT /projects/{id}: like the service, customdata
// given in the body replaces the whole object; the other fields of
// ProjectUpdateInput are checked and otherwise ignored (the simulated
// project keeps its name).
func (s *Sim) updateProject(w http.ResponseWriter, r *http.Request, id string) {
	if !s.checkProject(w, id) {
		return
	}
	var in struct {
		Name       *string         `json:"name"`
		Tags       *[]string       `json:"tags"`
		Customdata json.RawMessage `json:"customdata"`
	}
	if !decodeBody(w, r, &in, true) {
		return
	}
	if in.Name != nil && (len(*in.Name) < 1 || len(*in.Name) > 80) {
		writeErr(w, http.StatusUnprocessableEntity, "name must be 1 to 80 characters")
		return
	}
	if in.Customdata != nil && !bytes.Equal(bytes.TrimSpace(in.Customdata), []byte("null")) {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(in.Customdata, &obj); err != nil {
			writeErr(w, http.StatusUnprocessableEntity, "customdata must be a JSON object")
			return
		}
		if len(in.Customdata) > maxCustomdata {
			writeErr(w, http.StatusUnprocessableEntity, "customdata is too large")
			return
		}
		compact, _ := json.Marshal(obj)
		s.customdata.mu.Lock()
		s.customdata.data = compact
		s.customdata.mu.Unlock()
	}
	s.getProject(w, r, id)
}
