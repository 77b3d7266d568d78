// Package network knows the network types of Packet (Equinix Metal)
// devices: how the service's composite type follows from a device's ports,
// and which port calls turn one port configuration into another.
//
// It is pure: no I/O, no clock. The caller reads the ports (GET
// /ports/{id} or the device's network_ports), asks Next for one step, makes
// that call, reads the ports again and repeats. Because every step is
// computed from the state just read, a conversion that was interrupted
// (Ctrl-C, a crash, a failed call) is finished by the next run, and a run
// over a converged device makes no call at all.
package network

import (
	"fmt"
	"slices"
	"strings"
)

// Type is a device's composite network type, as the service, its console
// and Terraform's provider name it.
type Type string

// The five network types. Layer3 is what every multi-port device comes up
// with: bond0 over all ports, layer 3, public and private addresses.
const (
	// Layer3: bond0 bonded over every port, in layer 3, no VLANs.
	Layer3 Type = "layer3"
	// Hybrid: bond0 in layer 3 over eth0; the other ports leave the bond
	// and carry the VLANs.
	Hybrid Type = "hybrid"
	// HybridBonded: Layer3 with VLANs on bond0 next to the addresses.
	HybridBonded Type = "hybrid-bonded"
	// Layer2Individual: no bond; every port is its own layer 2 port and
	// carries the VLANs. The device has no addresses of its own.
	Layer2Individual Type = "layer2-individual"
	// Layer2Bonded: bond0 over every port in layer 2, VLANs on bond0, no
	// addresses.
	Layer2Bonded Type = "layer2-bonded"
)

// Types lists the network types in the order documentation and messages
// show them.
var Types = []Type{Layer3, Hybrid, HybridBonded, Layer2Individual, Layer2Bonded}

// Parse returns the Type named s, false if s names none.
func Parse(s string) (Type, bool) {
	for _, t := range Types {
		if string(t) == s {
			return t, true
		}
	}
	return "", false
}

// Names returns the type names, for messages and suggestions.
func Names() []string {
	out := make([]string, len(Types))
	for i, t := range Types {
		out[i] = string(t)
	}
	return out
}

// TakesVLANs reports whether VLANs can be attached in type t: every type
// but Layer3 (whose VLAN-carrying twin is HybridBonded).
func (t Type) TakesVLANs() bool { return t != Layer3 && t != "" }

// Layer2 reports whether t has no layer 3 bond (the device then has no
// addresses the service manages).
func (t Type) Layer2() bool { return t == Layer2Bonded || t == Layer2Individual }

// Port types as the service reports them in Port.type.
const (
	PortTypeBond     = "NetworkBondPort"
	PortTypePhysical = "NetworkPort"
)

// Port is one port of a device, as read from the API.
type Port struct {
	ID   string `json:"id"`
	Name string `json:"name"` // "bond0", "eth0", ...
	// IsBond is true for a NetworkBondPort.
	IsBond bool `json:"is_bond"`
	// Bonded is the port's data.bonded: for a physical port, a member of its
	// bond; for a bond port, the bond is up (at least one member bonded).
	Bonded bool `json:"bonded"`
	// NetworkType is the port's network_type as the service reports it
	// ("" if absent). For a bond port it tells layer 2 from layer 3.
	NetworkType string `json:"network_type,omitempty"`
	// BondName is the name of the bond a physical port belongs to ("bond0").
	BondName string `json:"bond_name,omitempty"`
	// VLANs are the ids of the virtual networks attached to the port (the
	// caller's choice of id, used as opaque strings; sorted or not).
	VLANs []string `json:"vlans,omitempty"`
	// Native is the native VLAN's id, "" if none.
	Native string `json:"native,omitempty"`
}

// State is what the network type of one device follows from. Its JSON
// form is part of saved plan files (docs/plan-format.md).
type State struct {
	// Plan is the device's plan slug: a few plans have a fixed type.
	Plan string `json:"plan"`
	// Frozen is the device's network_frozen: no port call is allowed.
	Frozen bool `json:"frozen"`
	// ManagementIPs is true when the device has management addresses (the
	// service removes them in layer 2). It only decides layer 2 from layer
	// 3 when the bond port does not report its network_type.
	ManagementIPs bool   `json:"management_ips"`
	Ports         []Port `json:"ports"`
}

// fixedTypes are plans whose network cannot be changed and whose type the
// service reports whatever the ports say (the same facts packngo encodes).
var fixedTypes = map[string]Type{
	"baremetal_0":  Layer3,
	"baremetal_1":  Layer3,
	"baremetal_1e": Hybrid,
}

// FixedType returns the type a plan always has, false if it is changeable.
func FixedType(plan string) (Type, bool) {
	t, ok := fixedTypes[plan]
	return t, ok
}

// CheckPlan fails when a machine type cannot be given network type t:
// plans with a fixed type, and plans with fewer than two ports (nothing to
// bond or split). ports is the plan's port count, 0 if unknown (then only
// the fixed types are checked).
func CheckPlan(plan string, ports int, t Type) error {
	if f, ok := fixedTypes[plan]; ok {
		if f == t {
			return nil
		}
		return fmt.Errorf("machine type %q always has network type %s and cannot be converted to %s", plan, f, t)
	}
	if ports == 1 && t != Layer3 {
		return fmt.Errorf("machine type %q has a single port, so its network type stays layer3 (%s needs two or more ports)", plan, t)
	}
	return nil
}

func (s State) bond() *Port {
	for i := range s.Ports {
		if s.Ports[i].IsBond {
			return &s.Ports[i]
		}
	}
	return nil
}

// members returns the physical ports sorted by name (eth0 before eth1).
func (s State) members() []*Port {
	var out []*Port
	for i := range s.Ports {
		if !s.Ports[i].IsBond {
			out = append(out, &s.Ports[i])
		}
	}
	slices.SortFunc(out, func(a, b *Port) int { return comparePortNames(a.Name, b.Name) })
	return out
}

// comparePortNames orders eth2 before eth10.
func comparePortNames(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// bondLayer2 reports whether the bond port is in layer 2.
func (s State) bondLayer2(b *Port) bool {
	if b.NetworkType != "" {
		return strings.HasPrefix(b.NetworkType, "layer2")
	}
	return !s.ManagementIPs
}

// Derive returns the device's composite network type the way the service
// and Terraform's provider derive it: fixed plans have their type; with
// every bond and every port bonded it is layer2-bonded when the bond is in
// layer 2 (no management addresses), hybrid-bonded when VLANs ride the
// layer 3 bond, layer3 otherwise; with the bonds up but a port out of its
// bond it is hybrid; with a bond down it is layer2-individual. A device
// whose document has no ports is reported as layer3, what it was born with.
func Derive(s State) Type {
	if t, ok := fixedTypes[s.Plan]; ok {
		return t
	}
	b := s.bond()
	ms := s.members()
	if b == nil || len(ms) == 0 {
		return Layer3
	}
	bondsUp := true
	for _, p := range s.Ports {
		if p.IsBond && !p.Bonded {
			bondsUp = false
		}
	}
	if !bondsUp {
		return Layer2Individual
	}
	for _, m := range ms {
		if !m.Bonded {
			// A port out of a layer 2 bond is layer2-individual, whatever
			// bond0's flag says; out of a layer 3 bond, hybrid.
			if s.bondLayer2(b) {
				return Layer2Individual
			}
			return Hybrid
		}
	}
	switch {
	case s.bondLayer2(b):
		return Layer2Bonded
	case len(b.VLANs) > 0 || b.NetworkType == string(HybridBonded):
		return HybridBonded
	}
	return Layer3
}

// VLANs returns the VLANs the device's ports carry, sorted and without
// duplicates: what a plan shows as the live `vlans`.
func VLANs(s State) []string {
	var out []string
	for _, p := range s.Ports {
		out = append(out, p.VLANs...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
