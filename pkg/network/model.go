package network

import (
	"errors"
	"fmt"
	"slices"
)

// Apply returns the state after step, or the refusal the service answers
// (422) for a call it does not allow. The rules are the service's, as its
// documentation and clients describe them:
//   - nothing changes on a frozen network or a fixed-type plan;
//   - only a bond port converts, only when it is up and no VLAN is attached
//     to it or its members (unassign first);
//   - a layer 3 bond keeps at least one member (it cannot be "unbonded");
//   - a port with VLANs cannot join a bond;
//   - a VLAN goes on a bond that is up or on a port out of its bond, never
//     on a bond member; a native VLAN is cleared before it is unassigned.
//
// Apply does not modify s. Its result reports the network_type the service
// would show on every port.
func Apply(s State, st Step) (State, error) {
	if s.Frozen {
		return s, ErrFrozen
	}
	if f, ok := fixedTypes[s.Plan]; ok {
		return s, fmt.Errorf("machine type %q has a fixed network type (%s)", s.Plan, f)
	}
	s = clone(s)
	p := s.port(st.PortID)
	if p == nil {
		return s, fmt.Errorf("port %q not found", st.PortID)
	}
	b, ms := s.bond(), s.members()
	if b == nil {
		return s, errors.New("the device has no bond port")
	}
	switch st.Op {
	case OpUnassign:
		if !slices.Contains(p.VLANs, st.VLAN) {
			return s, fmt.Errorf("virtual network %s is not assigned to port %s", st.VLAN, p.Name)
		}
		if p.Native == st.VLAN {
			return s, fmt.Errorf("virtual network %s is the native VLAN of port %s: clear it first", st.VLAN, p.Name)
		}
		p.VLANs = slices.DeleteFunc(p.VLANs, func(v string) bool { return v == st.VLAN })
	case OpClearNative:
		p.Native = ""
	case OpBond:
		targets := []*Port{p}
		if p.IsBond {
			targets = ms
		}
		for _, m := range targets {
			if len(m.VLANs) > 0 {
				return s, fmt.Errorf("port %s has virtual networks assigned: unassign them before bonding", m.Name)
			}
		}
		for _, m := range targets {
			m.Bonded = true
		}
	case OpDisbond:
		l2 := s.bondLayer2(b)
		if p.IsBond {
			if !l2 {
				return s, fmt.Errorf("bond port %s is in layer 3 and cannot be disbonded: convert it to layer 2 first", p.Name)
			}
			for _, m := range ms {
				m.Bonded = false
			}
			break
		}
		if !l2 && p.Bonded && bondedCount(ms) == 1 {
			return s, fmt.Errorf("port %s is the last member of layer 3 bond %s and cannot leave it", p.Name, b.Name)
		}
		p.Bonded = false
	case OpToLayer2, OpToLayer3:
		if !p.IsBond {
			return s, fmt.Errorf("port %s is not a bond port: only bond ports convert", p.Name)
		}
		if bondedCount(ms) == 0 {
			return s, fmt.Errorf("bond %s is down: bond a port before converting", p.Name)
		}
		for _, q := range append([]*Port{b}, ms...) {
			if len(q.VLANs) > 0 {
				return s, fmt.Errorf("port %s has virtual networks assigned: unassign them before converting %s", q.Name, p.Name)
			}
		}
		if st.Op == OpToLayer2 {
			b.NetworkType = string(Layer2Bonded)
			s.ManagementIPs = false
		} else {
			b.NetworkType = string(Layer3)
			s.ManagementIPs = true
		}
	case OpAssign:
		if slices.Contains(p.VLANs, st.VLAN) {
			return s, fmt.Errorf("virtual network %s is already assigned to port %s", st.VLAN, p.Name)
		}
		if p.IsBond && bondedCount(ms) == 0 {
			return s, fmt.Errorf("bond %s is down: assign virtual networks to its ports", p.Name)
		}
		if !p.IsBond && p.Bonded {
			return s, fmt.Errorf("port %s is a member of bond %s: assign virtual networks to the bond", p.Name, p.BondName)
		}
		p.VLANs = append(p.VLANs, st.VLAN)
	default:
		return s, fmt.Errorf("unknown port call %q", st.Op)
	}
	b.Bonded = bondedCount(ms) > 0
	return s.withTypes(), nil
}

// withTypes sets every port's network_type as the service reports it: the
// bond's layer stays visible (layer2-* while in layer 2) next to the
// composite type.
func (s State) withTypes() State {
	b, ms := s.bond(), s.members()
	if b == nil {
		return s
	}
	l2 := s.bondLayer2(b)
	all := bondedCount(ms) == len(ms)
	var t Type
	switch {
	case l2 && all:
		t = Layer2Bonded
	case l2:
		t = Layer2Individual
	case !all:
		t = Hybrid
	case len(b.VLANs) > 0:
		t = HybridBonded
	default:
		t = Layer3
	}
	for i := range s.Ports {
		s.Ports[i].NetworkType = string(t)
	}
	return s
}

func (s *State) port(id string) *Port {
	for i := range s.Ports {
		if s.Ports[i].ID == id {
			return &s.Ports[i]
		}
	}
	return nil
}

func bondedCount(ms []*Port) int {
	n := 0
	for _, m := range ms {
		if m.Bonded {
			n++
		}
	}
	return n
}

func clone(s State) State {
	s.Ports = slices.Clone(s.Ports)
	for i := range s.Ports {
		s.Ports[i].VLANs = slices.Clone(s.Ports[i].VLANs)
	}
	return s
}

// NewState returns the state a device of a plan with n physical ports is
// provisioned in: bond0 over eth0..eth{n-1}, layer 3, bonded. Port ids are
// the names (tests and dry runs only).
func NewState(plan string, n int) State {
	s := State{Plan: plan, ManagementIPs: true}
	s.Ports = append(s.Ports, Port{ID: "bond0", Name: "bond0", IsBond: true, Bonded: true})
	for i := range n {
		name := fmt.Sprintf("eth%d", i)
		s.Ports = append(s.Ports, Port{ID: name, Name: name, Bonded: true, BondName: "bond0"})
	}
	return s.withTypes()
}
