package packetsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// vnet is a virtual network (VLAN) of the project, in one metro.
type vnet struct {
	id          uuid
	vxlan       int
	metro       *metro
	description string
	tags        []string
	created     time.Time
}

// vnetStore holds the project's virtual networks; guarded by Sim.mu.
type vnetStore struct {
	byID  map[uuid]*vnet
	order []*vnet
}

func (vs *vnetStore) add(v *vnet) {
	if vs.byID == nil {
		vs.byID = map[uuid]*vnet{}
	}
	vs.byID[v.id] = v
	vs.order = append(vs.order, v)
}

func (vs *vnetStore) remove(v *vnet) {
	delete(vs.byID, v.id)
	vs.order = slices.DeleteFunc(vs.order, func(x *vnet) bool { return x == v })
}

// resolveVNet finds a virtual network by id, or by VXLAN in metro m (the
// spec lets vnid be either). The caller holds s.mu.
func (s *Sim) resolveVNet(ref string, m *metro) *vnet {
	if u, ok := parseUUID(ref); ok {
		if v := s.vnets.byID[u]; v != nil && v.metro == m {
			return v
		}
		return nil
	}
	n, err := strconv.Atoi(ref)
	if err != nil {
		return nil
	}
	for _, v := range s.vnets.order {
		if v.vxlan == n && v.metro == m {
			return v
		}
	}
	return nil
}

type vnetJSON struct {
	ID          string          `json:"id"`
	Href        string          `json:"href"`
	VXLAN       int             `json:"vxlan"`
	Description string          `json:"description,omitempty"`
	MetroCode   string          `json:"metro_code"`
	Metro       json.RawMessage `json:"metro"`
	Tags        []string        `json:"tags"`
	CreatedAt   string          `json:"created_at"`
	AssignedTo  hrefJSON        `json:"assigned_to"`
	Instances   []hrefJSON      `json:"instances"`
}

func vnetHref(id uuid) string { return "/metal/v1/virtual-networks/" + id.String() }

// vnetRef renders a VLAN reference inside a port: {"href"} as the service
// does without include, the whole object with it. The caller holds s.mu.
func (s *Sim) vnetRef(id uuid, full bool) json.RawMessage {
	v := s.vnets.byID[id]
	if !full || v == nil {
		return mustJSON(hrefJSON{vnetHref(id)})
	}
	return mustJSON(s.renderVNet(v))
}

// renderVNet renders v with the devices whose ports carry it; the caller
// holds s.mu.
func (s *Sim) renderVNet(v *vnet) vnetJSON {
	j := vnetJSON{
		ID: v.id.String(), Href: vnetHref(v.id), VXLAN: v.vxlan, Description: v.description,
		MetroCode: v.metro.Code, Metro: v.metro.json, Tags: v.tags, CreatedAt: fmtTime(v.created),
		AssignedTo: hrefJSON{"/metal/v1/projects/" + s.project}, Instances: []hrefJSON{},
	}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	for _, d := range s.vnetUsers(v) {
		j.Instances = append(j.Instances, hrefJSON{deviceHref(d.id.String())})
	}
	return j
}

// vnetUsers lists the live devices with a port on v; the caller holds s.mu.
func (s *Sim) vnetUsers(v *vnet) []*device {
	var out []*device
	for _, d := range s.order {
		if d == nil || d.net == nil || d.gone || !d.deletedAt.IsZero() {
			continue
		}
		for _, p := range d.net.ports {
			if slices.Contains(p.vlans, v.id) {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

func (s *Sim) listVNets(w http.ResponseWriter, r *http.Request, pid string) {
	if !s.checkProject(w, pid) {
		return
	}
	q := r.URL.Query()
	metroCode := strings.ToLower(q.Get("metro"))
	if f := s.cat.facBy[strings.ToLower(q.Get("facility"))]; f != nil {
		metroCode = f.Metro.Code
	}
	s.mu.RLock()
	out := []vnetJSON{}
	for _, v := range s.vnets.order {
		if metroCode == "" || v.metro.Code == metroCode {
			out = append(out, s.renderVNet(v))
		}
	}
	s.mu.RUnlock()
	writeJSON(w, http.StatusOK, map[string]any{"virtual_networks": out})
}

func (s *Sim) createVNet(w http.ResponseWriter, r *http.Request, pid string) {
	if !s.checkProject(w, pid) {
		return
	}
	var in struct {
		Metro       string   `json:"metro"`
		Facility    string   `json:"facility"`
		VXLAN       *int     `json:"vxlan"`
		Description string   `json:"description"`
		Tags        []string `json:"tags"`
	}
	if !decodeBody(w, r, &in, true) {
		return
	}
	var m *metro
	switch {
	case in.Metro != "":
		m = s.cat.metroBy[strings.ToLower(in.Metro)]
		if m == nil {
			for _, x := range s.cat.metros {
				if x.ID.String() == strings.ToLower(in.Metro) {
					m = x
				}
			}
		}
		if m == nil {
			writeErr(w, http.StatusUnprocessableEntity, fmt.Sprintf("Metro %q is not a valid metro", in.Metro))
			return
		}
	case in.Facility != "":
		f := s.cat.facBy[strings.ToLower(in.Facility)]
		if f == nil {
			writeErr(w, http.StatusUnprocessableEntity, fmt.Sprintf("Facility %q is not a valid facility", in.Facility))
			return
		}
		m = f.Metro
	default:
		writeErr(w, http.StatusUnprocessableEntity, "metro is required")
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	taken := map[int]bool{}
	for _, v := range s.vnets.order {
		if v.metro == m {
			taken[v.vxlan] = true
		}
	}
	vx := 0
	if in.VXLAN != nil {
		vx = *in.VXLAN
		if vx < 2 || vx > 3999 {
			writeErr(w, http.StatusUnprocessableEntity, "vxlan must be between 2 and 3999")
			return
		}
		if taken[vx] {
			writeErr(w, http.StatusUnprocessableEntity, fmt.Sprintf("vxlan %d is already in use in metro %s", vx, m.Code))
			return
		}
	} else {
		for n := 1000; n <= 1999; n++ {
			if !taken[n] {
				vx = n
				break
			}
		}
		if vx == 0 {
			writeErr(w, http.StatusUnprocessableEntity, "no free vxlan left in 1000-1999 in metro "+m.Code)
			return
		}
	}
	v := &vnet{id: s.newID(), vxlan: vx, metro: m, description: in.Description, tags: slices.Clone(in.Tags), created: now}
	s.vnets.add(v)
	s.markDirty()
	writeJSON(w, http.StatusCreated, s.renderVNet(v))
}

func (s *Sim) lookupVNet(w http.ResponseWriter, id string) *vnet {
	if u, ok := parseUUID(id); ok {
		if v := s.vnets.byID[u]; v != nil {
			return v
		}
	}
	writeErr(w, http.StatusNotFound, "Not found")
	return nil
}

func (s *Sim) getVNet(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if v := s.lookupVNet(w, id); v != nil {
		writeJSON(w, http.StatusOK, s.renderVNet(v))
	}
}

// deleteVNet refuses a VLAN still on a port, like the service.
func (s *Sim) deleteVNet(w http.ResponseWriter, r *http.Request, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.lookupVNet(w, id)
	if v == nil {
		return
	}
	if users := s.vnetUsers(v); len(users) > 0 {
		writeErr(w, http.StatusUnprocessableEntity, fmt.Sprintf("Virtual network %d is assigned to %d device(s); unassign it first", v.vxlan, len(users)))
		return
	}
	s.vnets.remove(v)
	s.markDirty()
	w.WriteHeader(http.StatusNoContent)
}

// stateVNet is a virtual network in the state file.
type stateVNet struct {
	ID          string    `json:"id"`
	VXLAN       int       `json:"vxlan"`
	Metro       string    `json:"metro"`
	Description string    `json:"description,omitempty"`
	Tags        []string  `json:"tags,omitempty"`
	Created     time.Time `json:"created"`
}

// snapshotVNets copies the VLANs for saving; the caller holds s.mu.
func (s *Sim) snapshotVNets() []stateVNet {
	var out []stateVNet
	for _, v := range s.vnets.order {
		out = append(out, stateVNet{ID: v.id.String(), VXLAN: v.vxlan, Metro: v.metro.Code, Description: v.description, Tags: v.tags, Created: v.created})
	}
	return out
}

// loadVNets restores saved VLANs; the caller holds s.mu.
func (s *Sim) loadVNets(vs []stateVNet) error {
	for i, sv := range vs {
		id, ok := parseUUID(sv.ID)
		m := s.cat.metroBy[sv.Metro]
		if !ok || m == nil {
			return fmt.Errorf("virtual network %d (%q): unknown id or metro", i, sv.ID)
		}
		s.vnets.add(&vnet{id: id, vxlan: sv.VXLAN, metro: m, description: sv.Description, tags: sv.Tags, created: sv.Created})
	}
	return nil
}
