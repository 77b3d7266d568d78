package planner

import (
	"errors"
	"fmt"
	"slices"

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
	var errs []error
	seen := map[string]bool{}
	live := map[string][]Live{}
	for _, l := range in.Live {
		if in.Fleet != nil && l.Fleet == in.Fleet.Name && !Ignored(l.State) {
			live[l.Slot] = append(live[l.Slot], l)
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

// groupSlots lists the desired slots of one group on one machine type.
func groupSlots(ds []spec.Device, group, machine string) []string {
	var out []string
	for _, d := range ds {
		if d.Group == group && d.Machine == machine {
			out = append(out, d.Slot)
		}
	}
	slices.SortFunc(out, CompareSlots)
	return out
}
