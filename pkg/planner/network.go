package planner

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/lkfleet/lkfleet/pkg/network"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// CheckNetwork fails, before anything is created, for groups whose
// network type cannot be had: machine types that cannot change their
// network (a fixed type such as baremetal_0's layer3, or a single port; the
// catalogue's plans tell the port count) and live devices whose network
// the service froze (network_frozen) while their type differs from the
// fleet's. Each problem is reported once per group and machine type, or
// once per device.
func CheckNetwork(in Input) error {
	if !anyNetworkType(in.Desired) {
		// Nothing to check, so no need to index every live device.
		return nil
	}
	var errs []error
	seen := map[string]bool{}
	live := map[string][]Live{}
	for _, l := range in.Live {
		if in.Fleet != nil && l.Fleet() == in.Fleet.Name && !Ignored(l.State) {
			live[l.Slot()] = append(live[l.Slot()], l)
		}
	}
	for _, d := range sortedDevices(in.Desired) {
		if d.NetworkType == "" {
			continue
		}
		t, ok := network.Parse(d.NetworkType)
		if !ok {
			errs = append(errs, fmt.Errorf("check network_type of slot %s: unknown network type %q", d.Slot, d.NetworkType))
			continue
		}
		ports := 0
		if in.Catalogue != nil {
			ports = in.Catalogue.Plans[d.Machine].Ports
		}
		if err := network.CheckPlan(d.Machine, ports, t); err != nil {
			key := d.Group + "\x00" + d.Machine
			if !seen[key] {
				seen[key] = true
				errs = append(errs, fmt.Errorf("check network_type of group %q (%s): %w", d.Group, slotList(groupSlots(in.Desired, d.Group, d.Machine)), err))
			}
			continue
		}
		for _, l := range live[d.Slot] {
			if l.Network == nil || !l.Network.Frozen || l.Machine != d.Machine {
				continue
			}
			if got := network.Derive(*l.Network); got != t && !(t == network.HybridBonded && got == network.Layer3 && len(d.VLANs) == 0) {
				errs = append(errs, fmt.Errorf("check network_type of slot %s (device %s): the device's network is frozen (network_frozen) and stays %s; it cannot become %s",
					d.Slot, l.ID, got, t))
			}
		}
	}
	return errors.Join(errs...)
}

// anyNetworkType reports whether a desired device manages its network type.
func anyNetworkType(ds []spec.Device) bool {
	for i := range ds {
		if ds[i].NetworkType != "" {
			return true
		}
	}
	return false
}

// groupSlots lists the desired slots of one group on one machine type.
func groupSlots(ds []spec.Device, group, machine string) []string {
	var out []string
	for _, d := range ds {
		if d.Group == group && d.Machine == machine {
			out = append(out, d.Slot)
		}
	}
	slices.SortFunc(out, spec.CompareSlots)
	return out
}

// VirtualNetwork is one VLAN of the project, as the API lists it.
type VirtualNetwork struct {
	ID          string
	VXLAN       int
	Metro       string // metro code
	Description string
	Tags        []string
	// Users is how many devices have a port on it.
	Users int
}

// Name is how a plan shows the VLAN: its number.
func (v VirtualNetwork) Name() string { return strconv.Itoa(v.VXLAN) }

// ResolveVLAN finds the project's VLAN a fleet names in a metro: by
// number, or by description (the oldest of that description); false when
// there is none yet (apply creates it).
func ResolveVLAN(vnets []VirtualNetwork, metro string, v spec.VLAN) (VirtualNetwork, bool) {
	for _, n := range vnets {
		if n.Metro != metro {
			continue
		}
		if (v.VXLAN != 0 && n.VXLAN == v.VXLAN) || (v.VXLAN == 0 && n.Description == v.Description) {
			return n, true
		}
	}
	return VirtualNetwork{}, false
}

// networkDiffs compares a device's network with the fleet's: the derived
// type and the set of VLANs, each an in-place update (`~ network_type =
// "layer3" -> "hybrid"`, `~ vlans = [] -> [1001]`). A group without
// network_type, or a device whose listing had no ports, has none. A device
// of the right type and VLANs whose ports are not yet in the configuration
// lkfleet converges to (an interrupted conversion) shows as
// `~ network_ports`.
func networkDiffs(d *spec.Device, l *Live, cat *Catalogue) []AttrDiff {
	if d.NetworkType == "" || l.Network == nil {
		return nil
	}
	t, ok := network.Parse(d.NetworkType)
	if !ok {
		return nil
	}
	var vnets []VirtualNetwork
	if cat != nil {
		vnets = cat.VirtualNetworks
	}
	metro := l.Metro
	if metro == "" {
		metro = cat.MetroOf(l.Facility)
	}
	byID := map[string]VirtualNetwork{}
	for _, v := range vnets {
		byID[v.ID] = v
	}
	var liveNames []string
	liveIDs := network.VLANs(*l.Network)
	for _, id := range liveIDs {
		if v, ok := byID[id]; ok {
			liveNames = append(liveNames, v.Name())
		} else {
			liveNames = append(liveNames, id)
		}
	}
	var wantNames, wantIDs []string
	resolved := true
	for _, v := range d.VLANs {
		wantNames = append(wantNames, v.String())
		if n, ok := ResolveVLAN(vnets, metro, v); ok {
			wantIDs = append(wantIDs, n.ID)
		} else {
			resolved = false
		}
	}
	var out []AttrDiff
	got := network.Derive(*l.Network)
	if got != t && !(t == network.HybridBonded && got == network.Layer3 && len(d.VLANs) == 0) {
		out = append(out, AttrDiff{Name: "network_type", Before: string(got), After: string(t)})
	}
	slices.Sort(wantIDs)
	if !resolved || !slices.Equal(wantIDs, liveIDs) {
		out = append(out, AttrDiff{Name: "vlans", Before: fmtList(liveNames), After: fmtList(wantNames)})
	}
	if len(out) == 0 && !network.Converged(*l.Network, t, wantIDs) {
		out = append(out, AttrDiff{Name: "network_ports", Before: "partly converted", After: "converged"})
	}
	return out
}

// networkCreateAttrs are the network lines of a create.
func networkCreateAttrs(d *spec.Device) []AttrDiff {
	if d.NetworkType == "" {
		return nil
	}
	names := []string{}
	for _, v := range d.VLANs {
		names = append(names, v.String())
	}
	return []AttrDiff{{Name: "network_type", After: d.NetworkType}, {Name: "vlans", After: fmtList(names)}}
}

// NetworkAttrs reports whether a change's differences include the network
// (the executor then converges the ports after its PUT).
func NetworkAttrs(c *Change) (network, other bool) {
	for _, a := range c.Attrs {
		switch a.Name {
		case "network_type", "vlans", "network_ports":
			network = true
		default:
			other = true
		}
	}
	return network, other
}

// fileVLAN is a VLAN in a saved plan, as the fleet file names it.
type fileVLAN struct {
	VXLAN       int    `json:"vxlan,omitempty"`
	Description string `json:"description,omitempty"`
}

func toFileVLANs(vs []spec.VLAN) []fileVLAN {
	var out []fileVLAN
	for _, v := range vs {
		out = append(out, fileVLAN(v))
	}
	return out
}

func fromFileVLANs(vs []fileVLAN) []spec.VLAN {
	var out []spec.VLAN
	for _, v := range vs {
		out = append(out, spec.VLAN(v))
	}
	return out
}
