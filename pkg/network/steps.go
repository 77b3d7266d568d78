package network

import (
	"errors"
	"fmt"
	"slices"
)

// Op is one port call of the API.
type Op string

// The port calls, named by their API path under /ports/{id}/.
const (
	OpUnassign    Op = "unassign"        // POST /ports/{id}/unassign {vnid}
	OpClearNative Op = "native-vlan"     // DELETE /ports/{id}/native-vlan
	OpBond        Op = "bond"            // POST /ports/{id}/bond
	OpDisbond     Op = "disbond"         // POST /ports/{id}/disbond
	OpToLayer2    Op = "convert/layer-2" // POST /ports/{id}/convert/layer-2
	OpToLayer3    Op = "convert/layer-3" // POST /ports/{id}/convert/layer-3
	OpAssign      Op = "assign"          // POST /ports/{id}/assign {vnid}
)

// Step is one port call: Op on the port, with a VLAN for assign/unassign.
type Step struct {
	Op     Op
	PortID string
	Port   string // the port's name, for messages
	VLAN   string // virtual network id for OpAssign and OpUnassign
}

// String renders a step for logs and tests: "bond eth1", "assign 1001 to eth1".
func (s Step) String() string {
	switch s.Op {
	case OpAssign:
		return fmt.Sprintf("assign %s to %s", s.VLAN, s.Port)
	case OpUnassign:
		return fmt.Sprintf("unassign %s from %s", s.VLAN, s.Port)
	case OpClearNative:
		return "clear native vlan of " + s.Port
	}
	return string(s.Op) + " " + s.Port
}

// ErrFrozen is returned for a device whose network the service froze.
var ErrFrozen = errors.New("the device's network is frozen (network_frozen): its ports cannot be changed")

// target is the port configuration a Type stands for on one device.
type target struct {
	layer2  bool
	bonded  map[string]bool     // member name -> wants bonded
	vlansOn map[string][]string // port name -> wanted VLANs
}

// want computes the target configuration of type t with VLANs vlans on s.
//
// Where VLANs go, as the service's guides place them: on bond0 for
// hybrid-bonded and layer2-bonded, on the ports taken out of the bond
// (eth1, ...) for hybrid, on every port for layer2-individual.
func want(s State, t Type, vlans []string) (target, error) {
	if _, ok := Parse(string(t)); !ok {
		return target{}, fmt.Errorf("unknown network type %q", t)
	}
	if t == Layer3 && len(vlans) > 0 {
		return target{}, errors.New("layer3 carries no VLANs (hybrid-bonded is layer3 with VLANs)")
	}
	b, ms := s.bond(), s.members()
	if err := CheckPlan(s.Plan, len(ms), t); err != nil {
		return target{}, err
	}
	if b == nil || len(ms) == 0 {
		return target{}, errors.New("the device reports no bond port and no physical ports")
	}
	vs := slices.Clone(vlans)
	slices.Sort(vs)
	vs = slices.Compact(vs)
	tg := target{layer2: t.Layer2(), bonded: map[string]bool{}, vlansOn: map[string][]string{}}
	for i, m := range ms {
		switch t {
		case Layer3, HybridBonded, Layer2Bonded:
			tg.bonded[m.Name] = true
		case Hybrid:
			tg.bonded[m.Name] = i == 0
			if i > 0 {
				tg.vlansOn[m.Name] = vs
			}
		case Layer2Individual:
			tg.bonded[m.Name] = false
			tg.vlansOn[m.Name] = vs
		}
	}
	if t == HybridBonded || t == Layer2Bonded {
		tg.vlansOn[b.Name] = vs
	}
	return tg, nil
}

// Next returns the next port call that brings s closer to network type t
// carrying VLANs vlans, and false when s already is there. It decides from
// s alone, so calling it again on the state read after each call makes the
// whole conversion idempotent and resumable.
//
// The order follows what the service allows:
//  1. unassign VLANs a port should not carry (all of them when the bond
//     changes layer: the service converts only VLAN-free bonds, and bonds
//     only VLAN-free ports, so VLANs leave before a re-bond);
//  2. change the bond's layer (bonding eth0 first if the bond is down);
//  3. bond the ports that belong in the bond;
//  4. take out the ports that do not (in layer 3 the bond keeps eth0);
//  5. assign the missing VLANs.
//
// Frozen networks, fixed-type plans and single-port plans are errors, as is
// a step the device's ports cannot take.
func Next(s State, t Type, vlans []string) (Step, bool, error) {
	if Converged(s, t, vlans) {
		return Step{}, false, nil
	}
	if s.Frozen {
		return Step{}, false, ErrFrozen
	}
	tg, err := want(s, t, vlans)
	if err != nil {
		return Step{}, false, err
	}
	b, ms := s.bond(), s.members()
	layerChange := s.bondLayer2(b) != tg.layer2
	ports := append([]*Port{b}, ms...)
	// 1. VLANs out.
	for _, p := range ports {
		keep := tg.vlansOn[p.Name]
		if layerChange {
			keep = nil
		}
		for _, v := range sortedCopy(p.VLANs) {
			if slices.Contains(keep, v) {
				continue
			}
			if p.Native == v {
				return Step{Op: OpClearNative, PortID: p.ID, Port: p.Name}, true, nil
			}
			return Step{Op: OpUnassign, PortID: p.ID, Port: p.Name, VLAN: v}, true, nil
		}
	}
	// 2. The bond's layer.
	if layerChange {
		if !bondUp(ms) {
			return Step{Op: OpBond, PortID: ms[0].ID, Port: ms[0].Name}, true, nil
		}
		if tg.layer2 {
			return Step{Op: OpToLayer2, PortID: b.ID, Port: b.Name}, true, nil
		}
		return Step{Op: OpToLayer3, PortID: b.ID, Port: b.Name}, true, nil
	}
	// 3. and 4. Bonding, joining before leaving.
	for _, m := range ms {
		if tg.bonded[m.Name] && !m.Bonded {
			return Step{Op: OpBond, PortID: m.ID, Port: m.Name}, true, nil
		}
	}
	for _, m := range ms {
		if !tg.bonded[m.Name] && m.Bonded {
			return Step{Op: OpDisbond, PortID: m.ID, Port: m.Name}, true, nil
		}
	}
	// 5. VLANs in.
	for _, p := range ports {
		for _, v := range tg.vlansOn[p.Name] {
			if !slices.Contains(p.VLANs, v) {
				return Step{Op: OpAssign, PortID: p.ID, Port: p.Name, VLAN: v}, true, nil
			}
		}
	}
	// Unreachable when want and Converged agree; say so rather than loop.
	return Step{}, false, fmt.Errorf("no port call leads from %s to %s", Derive(s), t)
}

// Converged reports whether s is network type t carrying exactly vlans, in
// the port configuration Next produces. A fixed-type plan is converged
// for its own type.
func Converged(s State, t Type, vlans []string) bool {
	if f, ok := fixedTypes[s.Plan]; ok {
		return f == t && len(vlans) == 0
	}
	tg, err := want(s, t, vlans)
	if err != nil {
		return false
	}
	b, ms := s.bond(), s.members()
	if s.bondLayer2(b) != tg.layer2 {
		return false
	}
	for _, m := range ms {
		if m.Bonded != tg.bonded[m.Name] {
			return false
		}
	}
	for _, p := range append([]*Port{b}, ms...) {
		if !sameSet(p.VLANs, tg.vlansOn[p.Name]) {
			return false
		}
	}
	return true
}

// Plan returns every step from s to type t with vlans, computing each with
// Next on the state Apply predicts. It is what a dry run shows; a real
// conversion calls Next on the state it reads after each call instead.
func Plan(s State, t Type, vlans []string) ([]Step, error) {
	var steps []Step
	limit := 8 + 4*len(s.Ports)*(2+len(vlans)+len(VLANs(s)))
	for range limit {
		st, more, err := Next(s, t, vlans)
		if err != nil || !more {
			return steps, err
		}
		if s, err = Apply(s, st); err != nil {
			return steps, fmt.Errorf("%s: %w", st, err)
		}
		steps = append(steps, st)
	}
	return steps, fmt.Errorf("converting to %s did not finish in %d steps", t, limit)
}

func bondUp(ms []*Port) bool {
	for _, m := range ms {
		if m.Bonded {
			return true
		}
	}
	return false
}

func sortedCopy(v []string) []string {
	c := slices.Clone(v)
	slices.Sort(c)
	return c
}

func sameSet(a, b []string) bool {
	a, b = sortedCopy(a), sortedCopy(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
