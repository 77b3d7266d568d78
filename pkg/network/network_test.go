package network

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// canonical returns the state a device of type t with vlans is in once
// converged from a fresh two-port device.
func canonical(t *testing.T, typ Type, vlans ...string) State {
	t.Helper()
	s := NewState("c3.small.x86", 2)
	steps, err := Plan(s, typ, vlans)
	if err != nil {
		t.Fatalf("plan %s: %v", typ, err)
	}
	for _, st := range steps {
		if s, err = Apply(s, st); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func stepStrings(steps []Step) string {
	var out []string
	for _, s := range steps {
		out = append(out, s.String())
	}
	return strings.Join(out, "; ")
}

// The exact sequences between the canonical configurations: the ones a
// person reads in a dry run, in the order the service accepts.
func TestPlanSequences(t *testing.T) {
	cases := []struct {
		from      Type
		fromVLANs []string
		to        Type
		toVLANs   []string
		want      string
	}{
		{Layer3, nil, Layer3, nil, ""},
		{Layer3, nil, Hybrid, []string{"v1"}, "disbond eth1; assign v1 to eth1"},
		{Layer3, nil, HybridBonded, []string{"v1"}, "assign v1 to bond0"},
		{Layer3, nil, Layer2Bonded, []string{"v1"}, "convert/layer-2 bond0; assign v1 to bond0"},
		{Layer3, nil, Layer2Individual, []string{"v1"}, "convert/layer-2 bond0; disbond eth0; disbond eth1; assign v1 to eth0; assign v1 to eth1"},
		{Hybrid, []string{"v1"}, Layer3, nil, "unassign v1 from eth1; bond eth1"},
		{Hybrid, []string{"v1"}, Hybrid, []string{"v1", "v2"}, "assign v2 to eth1"},
		{Hybrid, []string{"v1"}, HybridBonded, []string{"v1"}, "unassign v1 from eth1; bond eth1; assign v1 to bond0"},
		{Hybrid, []string{"v1"}, Layer2Individual, []string{"v1"}, "unassign v1 from eth1; convert/layer-2 bond0; disbond eth0; assign v1 to eth0; assign v1 to eth1"},
		{Layer2Bonded, []string{"v1"}, Layer3, nil, "unassign v1 from bond0; convert/layer-3 bond0"},
		{Layer2Bonded, []string{"v1"}, HybridBonded, []string{"v1"}, "unassign v1 from bond0; convert/layer-3 bond0; assign v1 to bond0"},
		{Layer2Individual, []string{"v1"}, Layer3, nil, "unassign v1 from eth0; unassign v1 from eth1; bond eth0; convert/layer-3 bond0; bond eth1"},
		{Layer2Individual, []string{"v1"}, Hybrid, []string{"v1"}, "unassign v1 from eth0; unassign v1 from eth1; bond eth0; convert/layer-3 bond0; assign v1 to eth1"},
		{Layer2Individual, []string{"v1"}, Layer2Bonded, []string{"v1"}, "unassign v1 from eth0; unassign v1 from eth1; bond eth0; bond eth1; assign v1 to bond0"},
		{HybridBonded, []string{"v1", "v2"}, HybridBonded, []string{"v2"}, "unassign v1 from bond0"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s%v->%s%v", c.from, c.fromVLANs, c.to, c.toVLANs), func(t *testing.T) {
			s := canonical(t, c.from, c.fromVLANs...)
			steps, err := Plan(s, c.to, c.toVLANs)
			if err != nil {
				t.Fatal(err)
			}
			if got := stepStrings(steps); got != c.want {
				t.Errorf("steps\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestDeriveCanonical(t *testing.T) {
	for _, c := range []struct {
		typ   Type
		vlans []string
		want  Type
	}{
		{Layer3, nil, Layer3},
		{Hybrid, nil, Hybrid},
		{Hybrid, []string{"v"}, Hybrid},
		{HybridBonded, []string{"v"}, HybridBonded},
		// Without VLANs hybrid-bonded is layer3: the service cannot tell.
		{HybridBonded, nil, Layer3},
		{Layer2Individual, nil, Layer2Individual},
		{Layer2Bonded, []string{"v"}, Layer2Bonded},
		{Layer2Bonded, nil, Layer2Bonded},
	} {
		s := canonical(t, c.typ, c.vlans...)
		if got := Derive(s); got != c.want {
			t.Errorf("Derive(%s %v) = %s, want %s", c.typ, c.vlans, got, c.want)
		}
		// The type must also follow from the flags and addresses alone
		// (packngo's way, no port network_type), except where VLANs decide.
		bare := clone(s)
		for i := range bare.Ports {
			bare.Ports[i].NetworkType = ""
		}
		if got := Derive(bare); got != c.want {
			t.Errorf("Derive(%s %v) without port network types = %s, want %s", c.typ, c.vlans, got, c.want)
		}
	}
}

// Derivation from documents as the service sends them.
func TestDeriveDocuments(t *testing.T) {
	p := func(name string, bond, bonded bool) Port {
		return Port{ID: name, Name: name, IsBond: bond, Bonded: bonded}
	}
	cases := []struct {
		name string
		s    State
		want Type
	}{
		{"fresh", State{ManagementIPs: true, Ports: []Port{p("bond0", true, true), p("eth0", false, true), p("eth1", false, true)}}, Layer3},
		{"no management addresses", State{Ports: []Port{p("bond0", true, true), p("eth0", false, true), p("eth1", false, true)}}, Layer2Bonded},
		{"eth1 out", State{ManagementIPs: true, Ports: []Port{p("bond0", true, true), p("eth0", false, true), p("eth1", false, false)}}, Hybrid},
		{"bond down", State{Ports: []Port{p("bond0", true, false), p("eth0", false, false), p("eth1", false, false)}}, Layer2Individual},
		{"baremetal_0 whatever its ports", State{Plan: "baremetal_0", Ports: []Port{p("bond0", true, false)}}, Layer3},
		{"baremetal_1e", State{Plan: "baremetal_1e"}, Hybrid},
		{"no ports", State{}, Layer3},
		{"bond port says hybrid-bonded", State{ManagementIPs: true, Ports: []Port{
			{ID: "b", Name: "bond0", IsBond: true, Bonded: true, NetworkType: "hybrid-bonded"}, p("eth0", false, true), p("eth1", false, true)}}, HybridBonded},
		{"layer 2 bond with a port out", State{Ports: []Port{
			{ID: "b", Name: "bond0", IsBond: true, Bonded: true, NetworkType: "layer2-individual"}, p("eth0", false, true), p("eth1", false, false)}}, Layer2Individual},
	}
	for _, c := range cases {
		if got := Derive(c.s); got != c.want {
			t.Errorf("%s: Derive = %s, want %s", c.name, got, c.want)
		}
	}
}

// allStates enumerates every port configuration of a two-port device
// (including ones the service would never produce): the bond's layer, each
// member's bonded flag, and any subset of two VLANs on every port.
func allStates() []State {
	var out []State
	subsets := [][]string{nil, {"a"}, {"b"}, {"a", "b"}}
	for _, l2 := range []bool{false, true} {
		for bonded := range 4 {
			for vb := range 4 {
				for v0 := range 4 {
					for v1 := range 4 {
						s := NewState("c3.small.x86", 2)
						if l2 {
							s.Ports[0].NetworkType = string(Layer2Bonded)
							s.ManagementIPs = false
						}
						s.Ports[1].Bonded = bonded&1 != 0
						s.Ports[2].Bonded = bonded&2 != 0
						s.Ports[0].Bonded = s.Ports[1].Bonded || s.Ports[2].Bonded
						s.Ports[0].VLANs = slices.Clone(subsets[vb])
						s.Ports[1].VLANs = slices.Clone(subsets[v0])
						s.Ports[2].VLANs = slices.Clone(subsets[v1])
						out = append(out, s.withTypes())
					}
				}
			}
		}
	}
	return out
}

// From every configuration to every type and VLAN set: the plan is legal
// step by step (Apply accepts each), ends converged with the derived type
// and VLANs wanted, and a second plan is empty. Every intermediate state
// is itself a start state here, so an interrupted conversion resumes.
func TestPlanExhaustive(t *testing.T) {
	targets := [][]string{nil, {"a"}, {"a", "c"}}
	n := 0
	for _, start := range allStates() {
		for _, typ := range Types {
			for _, vl := range targets {
				if typ == Layer3 && len(vl) > 0 {
					continue
				}
				n++
				steps, err := Plan(start, typ, vl)
				if err != nil {
					t.Fatalf("from %+v to %s %v: %v (after %s)", start, typ, vl, err, stepStrings(steps))
				}
				s := start
				for _, st := range steps {
					if s, err = Apply(s, st); err != nil {
						t.Fatal(err)
					}
				}
				if !Converged(s, typ, vl) {
					t.Fatalf("from %+v to %s: not converged after %s", start, typ, stepStrings(steps))
				}
				wantType := typ
				if typ == HybridBonded && len(vl) == 0 {
					wantType = Layer3
				}
				if got := Derive(s); got != wantType {
					t.Fatalf("from %+v to %s %v: derived %s after %s", start, typ, vl, got, stepStrings(steps))
				}
				if got := VLANs(s); !sameSet(got, vl) {
					t.Fatalf("to %s %v: VLANs %v", typ, vl, got)
				}
				if again, err := Plan(s, typ, vl); err != nil || len(again) > 0 {
					t.Fatalf("to %s: second plan %s, %v", typ, stepStrings(again), err)
				}
				if len(steps) > 14 {
					t.Fatalf("from %+v to %s %v: %d steps (%s)", start, typ, vl, len(steps), stepStrings(steps))
				}
			}
		}
	}
	if n != 512*13 {
		t.Errorf("checked %d conversions, want %d", n, 512*13)
	}
}

// Four-port plans split and bond every port, not only eth0/eth1.
func TestPlanFourPorts(t *testing.T) {
	s := NewState("n3.xlarge.x86", 4)
	steps, err := Plan(s, Hybrid, []string{"v"})
	if err != nil {
		t.Fatal(err)
	}
	want := "disbond eth1; disbond eth2; disbond eth3; assign v to eth1; assign v to eth2; assign v to eth3"
	if got := stepStrings(steps); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRefusals(t *testing.T) {
	frozen := NewState("c3.small.x86", 2)
	frozen.Frozen = true
	if _, _, err := Next(frozen, Hybrid, nil); !errors.Is(err, ErrFrozen) {
		t.Errorf("frozen: %v", err)
	}
	// A frozen device that already is what is wanted needs nothing.
	if _, more, err := Next(frozen, Layer3, nil); more || err != nil {
		t.Errorf("frozen converged: %v %v", more, err)
	}
	for _, c := range []struct {
		s    State
		t    Type
		v    []string
		want string
	}{
		{NewState("baremetal_0", 1), Hybrid, nil, `machine type "baremetal_0" always has network type layer3 and cannot be converted to hybrid`},
		{NewState("baremetal_1", 2), Layer2Bonded, nil, `machine type "baremetal_1" always has network type layer3`},
		{NewState("x.single", 1), Layer2Individual, nil, `machine type "x.single" has a single port`},
		{NewState("c3.small.x86", 2), Layer3, []string{"v"}, "layer3 carries no VLANs"},
		{NewState("c3.small.x86", 2), "layer9", nil, `unknown network type "layer9"`},
		{State{Plan: "c3.small.x86"}, Hybrid, nil, "no bond port"},
	} {
		_, _, err := Next(c.s, c.t, c.v)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s to %s: error %v, want %q", c.s.Plan, c.t, err, c.want)
		}
	}
	if _, _, err := Next(NewState("baremetal_0", 1), Layer3, nil); err != nil {
		t.Errorf("baremetal_0 layer3: %v", err)
	}
}

// The model refuses what the service refuses; Next never asks for it.
func TestApplyRefuses(t *testing.T) {
	l3 := NewState("c3.small.x86", 2)
	hyb := canonical(t, Hybrid, "v")
	l2i := canonical(t, Layer2Individual)
	hb := canonical(t, HybridBonded, "v")
	for _, c := range []struct {
		name string
		s    State
		st   Step
		want string
	}{
		{"disbond layer 3 bond", l3, Step{Op: OpDisbond, PortID: "bond0"}, "cannot be disbonded"},
		{"last member of layer 3 bond", hyb, Step{Op: OpDisbond, PortID: "eth0"}, "last member"},
		{"bond a port with VLANs", hyb, Step{Op: OpBond, PortID: "eth1"}, "unassign them before bonding"},
		{"convert with VLANs", hb, Step{Op: OpToLayer2, PortID: "bond0"}, "before converting"},
		{"convert a member", l3, Step{Op: OpToLayer2, PortID: "eth0"}, "not a bond port"},
		{"convert a down bond", l2i, Step{Op: OpToLayer3, PortID: "bond0"}, "is down"},
		{"assign to a member", l3, Step{Op: OpAssign, PortID: "eth0", VLAN: "v"}, "assign virtual networks to the bond"},
		{"assign to a down bond", l2i, Step{Op: OpAssign, PortID: "bond0", VLAN: "v"}, "is down"},
		{"assign twice", hyb, Step{Op: OpAssign, PortID: "eth1", VLAN: "v"}, "already assigned"},
		{"unassign absent", l3, Step{Op: OpUnassign, PortID: "bond0", VLAN: "v"}, "not assigned"},
		{"unknown port", l3, Step{Op: OpBond, PortID: "eth9"}, "not found"},
	} {
		_, err := Apply(c.s, c.st)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	native := canonical(t, Hybrid, "v", "w")
	native.Ports[2].Native = "v"
	if _, err := Apply(native, Step{Op: OpUnassign, PortID: "eth1", VLAN: "v"}); err == nil {
		t.Error("unassigning a native VLAN was accepted")
	}
	steps, err := Plan(native, Layer3, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := stepStrings(steps); !strings.HasPrefix(got, "clear native vlan of eth1; unassign v from eth1") {
		t.Errorf("native VLAN not cleared first: %s", got)
	}
}

func TestParseAndChecks(t *testing.T) {
	for _, n := range Names() {
		if ty, ok := Parse(n); !ok || string(ty) != n {
			t.Errorf("Parse(%q) = %q %v", n, ty, ok)
		}
	}
	if _, ok := Parse("Layer3"); ok {
		t.Error("Parse accepted Layer3 (types are lower case)")
	}
	if Layer3.TakesVLANs() || !Hybrid.TakesVLANs() || !Layer2Bonded.Layer2() || HybridBonded.Layer2() {
		t.Error("TakesVLANs/Layer2 wrong")
	}
	if err := CheckPlan("c3.small.x86", 2, Layer2Individual); err != nil {
		t.Error(err)
	}
	if err := CheckPlan("baremetal_1e", 2, Hybrid); err != nil {
		t.Error(err)
	}
	if err := CheckPlan("x", 1, Layer3); err != nil {
		t.Error(err)
	}
	if err := CheckPlan("x", 0, Layer2Bonded); err != nil {
		t.Errorf("unknown port count must not fail: %v", err)
	}
}
