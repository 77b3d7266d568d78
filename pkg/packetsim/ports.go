package packetsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Ports and network types, as the service models them.
//
// A device of a multi-port plan comes up with bond0 (NetworkBondPort) over
// eth0, eth1, ... (NetworkPort), bonded, in layer 3. The port calls change
// that one step at a time, under the service's rules (see portCall). The
// state is kept per device only once a call changed it: a device without
// it is in the state it was provisioned in, so rendering never writes.

// planNet is what a plan's ports are: how many physical ports, and the
// network type the plan is fixed to ("" if changeable).
type planNet struct {
	ports int
	fixed string
}

// planNets lists the plans that differ from two changeable ports: the old
// Type 0 has one port, Types 0 and 1 are always layer 3 (and 1e hybrid),
// the big n3 has four ports.
var planNets = map[string]planNet{
	"baremetal_0":   {1, "layer3"},
	"baremetal_1":   {2, "layer3"},
	"baremetal_1e":  {2, "hybrid"},
	"n3.xlarge.x86": {4, ""},
}

func netOf(p *plan) planNet {
	if n, ok := planNets[p.Slug]; ok {
		return n
	}
	return planNet{ports: 2}
}

// planNICs is the NIC count GET /plans reports for a plan.
func planNICs(slug string) int {
	if n, ok := planNets[slug]; ok {
		return n.ports
	}
	return 2
}

// simPort is one port of a device. Index 0 is bond0, then eth0, eth1, ...
type simPort struct {
	bonded bool   // physical: member of bond0; bond0: ignored (derived)
	vlans  []uuid // attached virtual networks, in assignment order
	native uuid   // native VLAN (zero: none)
}

// netState is a device's port state once changed.
type netState struct {
	layer2 bool
	frozen bool
	ports  []simPort // bond0, eth0, ...
}

// netView returns the device's port state: its own, or the provisioned one
// (a fresh value the caller may not keep). The caller holds s.mu.
func netView(d *device) *netState {
	if d.net != nil {
		return d.net
	}
	n := netOf(d.plan)
	ns := &netState{ports: make([]simPort, 1+n.ports)}
	for i := range ns.ports {
		ns.ports[i].bonded = true
	}
	return ns
}

// netFor returns the device's own port state, creating it; the caller
// holds s.mu for writing.
func netFor(d *device) *netState {
	if d.net == nil {
		d.net = netView(d)
	}
	return d.net
}

// portID derives the id of a device's port i from the device id, the way
// the simulator derives address ids: stable, and reversible by findPort.
func portID(dev uuid, i int) uuid {
	dev[14] ^= 0xa5
	dev[15] ^= byte(i + 1)
	return dev
}

// findPort returns the device and port index of a port id; the caller
// holds s.mu.
func (s *Sim) findPort(id uuid) (*device, int) {
	for i := range 8 {
		cand := id
		cand[14] ^= 0xa5
		cand[15] ^= byte(i + 1)
		if d := s.devs[cand]; d != nil && i < 1+netOf(d.plan).ports {
			return d, i
		}
	}
	return nil, 0
}

func portName(i int) string {
	if i == 0 {
		return "bond0"
	}
	return "eth" + strconv.Itoa(i-1)
}

func (ns *netState) bondUp() bool {
	for _, p := range ns.ports[1:] {
		if p.bonded {
			return true
		}
	}
	return false
}

// networkType is the composite type the service shows on every port.
func (ns *netState) networkType() string {
	all := true
	for _, p := range ns.ports[1:] {
		all = all && p.bonded
	}
	switch {
	case ns.layer2 && all:
		return "layer2-bonded"
	case ns.layer2:
		return "layer2-individual"
	case !all:
		return "hybrid"
	case len(ns.ports[0].vlans) > 0:
		return "hybrid-bonded"
	}
	return "layer3"
}

// hasVLANs returns the first port carrying VLANs, false if none does.
func (ns *netState) hasVLANs() (int, bool) {
	for i, p := range ns.ports {
		if len(p.vlans) > 0 {
			return i, true
		}
	}
	return 0, false
}

// JSON shapes of ports.
type portDataJSON struct {
	Bonded bool   `json:"bonded"`
	MAC    string `json:"mac,omitempty"`
}

type bondRefJSON struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type portJSON struct {
	ID               string            `json:"id"`
	Href             string            `json:"href"`
	Type             string            `json:"type"`
	Name             string            `json:"name"`
	Data             portDataJSON      `json:"data"`
	NetworkType      string            `json:"network_type"`
	DisbondSupported bool              `json:"disbond_operation_supported"`
	Bond             *bondRefJSON      `json:"bond,omitempty"`
	NativeVirtualNet json.RawMessage   `json:"native_virtual_network,omitempty"`
	VirtualNetworks  []json.RawMessage `json:"virtual_networks"`
}

// renderPort renders port i of d; full VLAN objects with include.
func (s *Sim) renderPort(d *device, ns *netState, i int, full bool) portJSON {
	id := portID(d.id, i).String()
	p := ns.ports[i]
	j := portJSON{
		ID: id, Href: "/metal/v1/ports/" + id, Name: portName(i), Type: "NetworkPort",
		NetworkType: ns.networkType(), DisbondSupported: s.changeable(d) == "",
		VirtualNetworks: []json.RawMessage{},
	}
	if i == 0 {
		j.Type = "NetworkBondPort"
		j.Data.Bonded = ns.bondUp()
	} else {
		j.Data.Bonded = p.bonded
		j.Data.MAC = nicMAC(d.id, i-1)
		bid := portID(d.id, 0).String()
		j.Bond = &bondRefJSON{ID: bid, Name: "bond0"}
	}
	for _, v := range p.vlans {
		j.VirtualNetworks = append(j.VirtualNetworks, s.vnetRef(v, full))
	}
	if p.native != (uuid{}) {
		j.NativeVirtualNet = s.vnetRef(p.native, full)
	}
	return j
}

// changeable returns why the device's network cannot change ("" if it can).
func (s *Sim) changeable(d *device) string {
	if netView(d).frozen {
		return "Network changes are not allowed on this device: its network is frozen"
	}
	if f := netOf(d.plan).fixed; f != "" {
		return fmt.Sprintf("Plan %s does not support network type changes (always %s)", d.plan.Slug, f)
	}
	return ""
}

// renderNetwork fills the device document's network parts: network_ports,
// bonding_mode, network_frozen, and no addresses in layer 2 (the service
// removes them when bond0 leaves layer 3).
func (s *Sim) renderNetwork(d *device, j *deviceJSON) {
	ns := netView(d)
	j.NetworkPorts = make([]portJSON, len(ns.ports))
	for i := range ns.ports {
		j.NetworkPorts[i] = s.renderPort(d, ns, i, false)
	}
	j.BondingMode = 4 // 802.3ad (LACP), what every bond0 runs
	j.NetworkFrozen = ns.frozen
	if ns.layer2 {
		j.IPAddresses = []ipJSON{}
	}
}

// SetNetworkFrozen sets a device's network_frozen, as the service's staff
// do for some devices; false if there is no such device.
func (s *Sim) SetNetworkFrozen(id string, frozen bool) bool {
	u, ok := parseUUID(id)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devs[u]
	if d == nil {
		return false
	}
	netFor(d).frozen = frozen
	s.markDirty()
	return true
}

// portCtx is a port call's target, found under the write lock.
type portCtx struct {
	d  *device
	ns *netState
	i  int
}

// withPort runs fn on the port with the write lock held and answers with
// the port afterwards, or with fn's refusal (422).
func (s *Sim) withPort(w http.ResponseWriter, r *http.Request, id string, mutate bool, fn func(pc portCtx) string) {
	now := s.now()
	u, ok := parseUUID(id)
	if !ok {
		writeErr(w, http.StatusNotFound, "Not found")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, i := s.findPort(u)
	if d == nil || d.goneAt(now, s.cfg.DeprovisionTime) || !d.deletedAt.IsZero() {
		writeErr(w, http.StatusNotFound, "Not found")
		return
	}
	pc := portCtx{d: d, ns: netView(d), i: i}
	if mutate {
		if why := s.changeable(d); why != "" {
			writeErr(w, http.StatusUnprocessableEntity, why)
			return
		}
		if st := d.state(now, s.cfg.DeprovisionTime); st != "active" && st != "inactive" {
			writeErr(w, http.StatusUnprocessableEntity, "Device must be active to change its network (it is "+st+")")
			return
		}
		pc.ns = netFor(d)
		if msg := fn(pc); msg != "" {
			writeErr(w, http.StatusUnprocessableEntity, msg)
			return
		}
		d.updated = now
		s.markDirty()
	}
	writeJSON(w, http.StatusOK, s.renderPort(d, pc.ns, i, includes(r, "virtual_networks")))
}

// includes reports whether the include parameter names field.
func includes(r *http.Request, field string) bool {
	for _, inc := range r.URL.Query()["include"] {
		for _, f := range strings.Split(inc, ",") {
			if strings.TrimSpace(f) == field {
				return true
			}
		}
	}
	return false
}

// flag reads a boolean option from the query (the spec's form) or the JSON
// body (packngo's form: {"bulk_enable": true}).
func flag(r *http.Request, body map[string]json.RawMessage, name string) bool {
	if v := r.URL.Query().Get(name); v != "" {
		b, _ := strconv.ParseBool(v)
		return b
	}
	var b bool
	if raw, ok := body[name]; ok {
		json.Unmarshal(raw, &b)
	}
	return b
}

// readBody decodes an optional JSON object body; false means a 422 was sent.
func readBody(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, bool) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		writeErr(w, http.StatusUnprocessableEntity, "could not read request body: "+err.Error())
		return nil, false
	}
	m := map[string]json.RawMessage{}
	if len(strings.TrimSpace(string(b))) == 0 || string(b) == "null" {
		return m, true
	}
	if err := json.Unmarshal(b, &m); err != nil {
		writeErr(w, http.StatusUnprocessableEntity, "invalid JSON body: "+err.Error())
		return nil, false
	}
	return m, true
}

func (s *Sim) getPort(w http.ResponseWriter, r *http.Request, id string) {
	s.withPort(w, r, id, false, nil)
}

// members returns the indexes a bond call acts on: every member for bond0
// or a bulk call, else the port itself.
func members(pc portCtx, bulk bool) []int {
	if pc.i == 0 || bulk {
		var out []int
		for k := 1; k < len(pc.ns.ports); k++ {
			out = append(out, k)
		}
		return out
	}
	return []int{pc.i}
}

func (s *Sim) bondPort(w http.ResponseWriter, r *http.Request, id string) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	bulk := flag(r, body, "bulk_enable")
	s.withPort(w, r, id, true, func(pc portCtx) string {
		ms := members(pc, bulk)
		for _, k := range ms {
			if len(pc.ns.ports[k].vlans) > 0 {
				return fmt.Sprintf("Port %s has virtual networks assigned; unassign them before bonding", portName(k))
			}
		}
		for _, k := range ms {
			pc.ns.ports[k].bonded = true
		}
		return ""
	})
}

func (s *Sim) disbondPort(w http.ResponseWriter, r *http.Request, id string) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	bulk := flag(r, body, "bulk_disable")
	s.withPort(w, r, id, true, func(pc portCtx) string {
		ms := members(pc, bulk)
		if !pc.ns.layer2 {
			if pc.i == 0 || len(ms) > 1 {
				return "Bond port bond0 is in layer 3 and cannot be disbonded; convert it to layer 2 first"
			}
			left := 0
			for k := 1; k < len(pc.ns.ports); k++ {
				if pc.ns.ports[k].bonded && k != pc.i {
					left++
				}
			}
			if left == 0 && pc.ns.ports[pc.i].bonded {
				return fmt.Sprintf("Port %s is the last member of layer 3 bond bond0 and cannot leave it", portName(pc.i))
			}
		}
		for _, k := range ms {
			pc.ns.ports[k].bonded = false
		}
		return ""
	})
}

func (s *Sim) convertPort(layer2 bool) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		if _, ok := readBody(w, r); !ok {
			return
		}
		s.withPort(w, r, id, true, func(pc portCtx) string {
			if pc.i != 0 {
				return fmt.Sprintf("Port %s is not a bond port; only bond ports convert", portName(pc.i))
			}
			if pc.ns.layer2 == layer2 {
				return ""
			}
			if !pc.ns.bondUp() {
				return "Bond bond0 is down; bond a port before converting it"
			}
			if k, ok := pc.ns.hasVLANs(); ok {
				return fmt.Sprintf("Port %s has virtual networks assigned; unassign them before converting bond0", portName(k))
			}
			pc.ns.layer2 = layer2
			return ""
		})
	}
}

// vnidOf reads the virtual network a call names: the body's vnid (packngo,
// the SDK) or the query's (native-vlan in the spec), an id or a VXLAN.
func vnidOf(r *http.Request, body map[string]json.RawMessage) string {
	if v := r.URL.Query().Get("vnid"); v != "" {
		return v
	}
	var s string
	if raw, ok := body["vnid"]; ok {
		if json.Unmarshal(raw, &s) != nil {
			var n int
			if json.Unmarshal(raw, &n) == nil {
				s = strconv.Itoa(n)
			}
		}
	}
	return s
}

func (s *Sim) assignPort(assign bool) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, id string) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		ref := vnidOf(r, body)
		s.withPort(w, r, id, true, func(pc portCtx) string {
			v := s.resolveVNet(ref, pc.d.fac.Metro)
			if v == nil {
				return fmt.Sprintf("Virtual network %q not found in metro %s", ref, pc.d.fac.Metro.Code)
			}
			p := &pc.ns.ports[pc.i]
			has := slices.Contains(p.vlans, v.id)
			if !assign {
				if !has {
					return fmt.Sprintf("Virtual network %d is not assigned to port %s", v.vxlan, portName(pc.i))
				}
				if p.native == v.id {
					return fmt.Sprintf("Virtual network %d is the native VLAN of port %s; remove the native VLAN first", v.vxlan, portName(pc.i))
				}
				p.vlans = slices.DeleteFunc(slices.Clone(p.vlans), func(x uuid) bool { return x == v.id })
				return ""
			}
			switch {
			case has:
				return fmt.Sprintf("Virtual network %d is already assigned to port %s", v.vxlan, portName(pc.i))
			case pc.i == 0 && !pc.ns.bondUp():
				return "Bond bond0 is down; assign virtual networks to its ports"
			case pc.i != 0 && p.bonded:
				return fmt.Sprintf("Port %s is a member of bond bond0; assign virtual networks to the bond", portName(pc.i))
			}
			p.vlans = append(slices.Clone(p.vlans), v.id)
			return ""
		})
	}
}

func (s *Sim) nativeVLAN(w http.ResponseWriter, r *http.Request, id string) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	ref := vnidOf(r, body)
	del := r.Method == http.MethodDelete
	s.withPort(w, r, id, true, func(pc portCtx) string {
		p := &pc.ns.ports[pc.i]
		if del {
			p.native = uuid{}
			return ""
		}
		v := s.resolveVNet(ref, pc.d.fac.Metro)
		if v == nil {
			return fmt.Sprintf("Virtual network %q not found in metro %s", ref, pc.d.fac.Metro.Code)
		}
		if !slices.Contains(p.vlans, v.id) {
			return fmt.Sprintf("Virtual network %d must be assigned to port %s before it becomes its native VLAN", v.vxlan, portName(pc.i))
		}
		p.native = v.id
		return ""
	})
}

// routeNetwork maps the port and virtual network routes; h is nil when
// the path is none of them.
func (s *Sim) routeNetwork(parts []string) (tmpl, id string, h map[string]apiHandler) {
	switch {
	case len(parts) == 2 && parts[0] == "ports":
		return "/ports/{id}", parts[1], map[string]apiHandler{"GET": s.getPort}
	case len(parts) == 3 && parts[0] == "ports" && parts[2] == "bond":
		return "/ports/{id}/bond", parts[1], map[string]apiHandler{"POST": s.bondPort}
	case len(parts) == 3 && parts[0] == "ports" && parts[2] == "disbond":
		return "/ports/{id}/disbond", parts[1], map[string]apiHandler{"POST": s.disbondPort}
	case len(parts) == 4 && parts[0] == "ports" && parts[2] == "convert" && parts[3] == "layer-2":
		return "/ports/{id}/convert/layer-2", parts[1], map[string]apiHandler{"POST": s.convertPort(true)}
	case len(parts) == 4 && parts[0] == "ports" && parts[2] == "convert" && parts[3] == "layer-3":
		return "/ports/{id}/convert/layer-3", parts[1], map[string]apiHandler{"POST": s.convertPort(false)}
	case len(parts) == 3 && parts[0] == "ports" && parts[2] == "assign":
		return "/ports/{id}/assign", parts[1], map[string]apiHandler{"POST": s.assignPort(true)}
	case len(parts) == 3 && parts[0] == "ports" && parts[2] == "unassign":
		return "/ports/{id}/unassign", parts[1], map[string]apiHandler{"POST": s.assignPort(false)}
	case len(parts) == 3 && parts[0] == "ports" && parts[2] == "native-vlan":
		return "/ports/{id}/native-vlan", parts[1], map[string]apiHandler{"POST": s.nativeVLAN, "DELETE": s.nativeVLAN}
	case len(parts) == 3 && parts[0] == "projects" && parts[2] == "virtual-networks":
		return "/projects/{id}/virtual-networks", parts[1], map[string]apiHandler{"GET": s.listVNets, "POST": s.createVNet}
	case len(parts) == 2 && parts[0] == "virtual-networks":
		return "/virtual-networks/{id}", parts[1], map[string]apiHandler{"GET": s.getVNet, "DELETE": s.deleteVNet}
	}
	return "", "", nil
}

// stateNet is a device's port state in the state file.
type stateNet struct {
	Layer2 bool        `json:"layer2,omitempty"`
	Frozen bool        `json:"frozen,omitempty"`
	Ports  []statePort `json:"ports"`
}

type statePort struct {
	Bonded bool     `json:"bonded"`
	VLANs  []string `json:"vlans,omitempty"`
	Native string   `json:"native,omitempty"`
}

// toState copies the port state for saving (nil: never changed).
func (ns *netState) toState() *stateNet {
	if ns == nil {
		return nil
	}
	out := &stateNet{Layer2: ns.layer2, Frozen: ns.frozen}
	for _, p := range ns.ports {
		sp := statePort{Bonded: p.bonded}
		for _, v := range p.vlans {
			sp.VLANs = append(sp.VLANs, v.String())
		}
		if p.native != (uuid{}) {
			sp.Native = p.native.String()
		}
		out.Ports = append(out.Ports, sp)
	}
	return out
}

// fromState restores a saved port state for a device of plan p; a state
// that does not fit the plan's ports is dropped (the device is then as
// provisioned).
func (sn *stateNet) fromState(p *plan) *netState {
	if sn == nil || len(sn.Ports) != 1+netOf(p).ports {
		return nil
	}
	ns := &netState{layer2: sn.Layer2, frozen: sn.Frozen}
	for _, sp := range sn.Ports {
		q := simPort{bonded: sp.Bonded}
		for _, v := range sp.VLANs {
			if u, ok := parseUUID(v); ok {
				q.vlans = append(q.vlans, u)
			}
		}
		q.native, _ = parseUUID(sp.Native)
		ns.ports = append(ns.ports, q)
	}
	return ns
}
