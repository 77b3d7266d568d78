package planner

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Need is one zone and machine type a plan wants devices of: the key of a
// capacity check (pipeline.Backend.CheckCapacity).
type Need struct {
	Zone    string // facility or metro code
	Machine string // plan slug
}

// Catalogue is what the API offers: machine types and locations. pkg/packet
// fetches it once per run; the planner only reads it.
type Catalogue struct {
	// Plans maps a plan slug (machine type) to what is known about it.
	// A nil map means the catalogue of plans is unknown: nothing is checked.
	Plans map[string]PlanInfo
	// Facilities maps a facility code to its metro code ("" if unknown).
	Facilities map[string]string
	// Metros is the set of metro codes.
	Metros map[string]bool
	// VirtualNetworks are the project's VLANs (network.go), listed only
	// when a group has a network_type.
	VirtualNetworks []VirtualNetwork
}

// PlanInfo is one machine type of the catalogue.
type PlanInfo struct {
	// Arch is the plan's CPU architecture (x86_64 or aarch64; the API's
	// amd64/arm64 spellings are accepted), "" if unknown.
	Arch string
	// Locations are the facility or metro codes where the plan is offered;
	// empty means unknown (not checked).
	Locations []string
	// Price is the on-demand hourly price in USD, 0 if unknown.
	Price float64
	// Ports is the plan's count of network ports, 0 if unknown.
	Ports int
}

// MetroOf returns the metro of a facility code, "" if unknown.
func (c *Catalogue) MetroOf(facility string) string {
	if c == nil {
		return ""
	}
	return c.Facilities[facility]
}

// CheckCatalogue fails when a desired device names a machine type or zone
// the catalogue does not know, or an architecture or location the machine
// type does not offer. It runs before anything is created, so a typo never
// costs a half-applied fleet. Every problem is reported, one per line,
// each naming the slots affected and, when one is close, a suggestion.
// Parts of the catalogue that are nil are not checked.
func CheckCatalogue(desired []spec.Device, cat Catalogue) error {
	type use struct {
		slots []string
	}
	machines := map[string]*use{}
	zones := map[string]*use{}
	var machineOrder, zoneOrder []string
	for _, d := range desired {
		if machines[d.Machine] == nil {
			machines[d.Machine] = &use{}
			machineOrder = append(machineOrder, d.Machine)
		}
		machines[d.Machine].slots = append(machines[d.Machine].slots, d.Slot)
		if zones[d.Zone] == nil {
			zones[d.Zone] = &use{}
			zoneOrder = append(zoneOrder, d.Zone)
		}
		zones[d.Zone].slots = append(zones[d.Zone].slots, d.Slot)
	}
	slices.Sort(machineOrder)
	slices.Sort(zoneOrder)

	var errs []error
	if cat.Plans != nil {
		known := sortedKeys(cat.Plans)
		for _, m := range machineOrder {
			if _, ok := cat.Plans[m]; !ok {
				errs = append(errs, fmt.Errorf("check machine type %q (%s): unknown machine type; %s",
					m, slotList(machines[m].slots), suggest(m, known, "machine types")))
			}
		}
	}
	if cat.Facilities != nil || cat.Metros != nil {
		known := sortedKeys(cat.Facilities)
		known = append(known, sortedKeys(cat.Metros)...)
		slices.Sort(known)
		for _, z := range zoneOrder {
			if !cat.knownZone(z) {
				errs = append(errs, fmt.Errorf("check zone %q (%s): unknown facility or metro; %s",
					z, slotList(zones[z].slots), suggest(z, known, "zones")))
			}
		}
	}
	// Architecture and availability, per device but reported once per
	// (machine, arch) and (machine, zone) pair.
	seen := map[string]bool{}
	for _, d := range sortedDevices(desired) {
		info, ok := cat.Plans[d.Machine]
		if !ok {
			continue
		}
		if pa, da := archKey(info.Arch), archKey(d.Arch); pa != "" && da != "" && pa != da {
			key := "arch\x00" + d.Machine + "\x00" + da
			if !seen[key] {
				seen[key] = true
				errs = append(errs, fmt.Errorf("check machine type %q (slot %s): it is %s but the image is built for %s",
					d.Machine, d.Slot, pa, da))
			}
		}
		if len(info.Locations) > 0 && cat.knownZone(d.Zone) && !cat.offeredIn(info.Locations, d.Zone) {
			key := "loc\x00" + d.Machine + "\x00" + d.Zone
			if !seen[key] {
				seen[key] = true
				locs := slices.Clone(info.Locations)
				slices.Sort(locs)
				errs = append(errs, fmt.Errorf("check machine type %q (slot %s): not offered in %q; offered in %s",
					d.Machine, d.Slot, d.Zone, strings.Join(locs, ", ")))
			}
		}
	}
	return errors.Join(errs...)
}

func (c Catalogue) knownZone(z string) bool {
	if _, ok := c.Facilities[z]; ok {
		return true
	}
	return c.Metros[z]
}

// offeredIn reports whether a zone is covered by a plan's locations: the
// same code, or a facility inside a listed metro, or a metro holding a
// listed facility.
func (c Catalogue) offeredIn(locs []string, zone string) bool {
	for _, l := range locs {
		if l == zone || (c.Facilities[zone] != "" && c.Facilities[zone] == l) ||
			(c.Facilities[l] != "" && c.Facilities[l] == zone) {
			return true
		}
	}
	return false
}

// archKey is an architecture as the catalogue check compares it: a known
// spelling normalised, an unknown one lower-cased (so two different
// unknown architectures still disagree).
func archKey(a string) string {
	return cmp.Or(spec.NormalizeArch(a), strings.ToLower(a))
}

func slotList(slots []string) string {
	if len(slots) == 1 {
		return "slot " + slots[0]
	}
	s := slices.Clone(slots)
	slices.SortFunc(s, spec.CompareSlots)
	return fmt.Sprintf("slot %s and %d more", s[0], len(s)-1)
}

// suggest names the closest known value, or lists a few known values when
// none is close enough to be a likely typo.
func suggest(got string, known []string, what string) string {
	if len(known) == 0 {
		return "the catalogue lists no " + what
	}
	if best := spec.Suggest(got, known); best != "" {
		return fmt.Sprintf("did you mean %q?", best)
	}
	const show = 8
	if len(known) > show {
		return fmt.Sprintf("known %s include %s, ...", what, strings.Join(known[:show], ", "))
	}
	return fmt.Sprintf("known %s: %s", what, strings.Join(known, ", "))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sortedDevices returns ds in slot order (spec.CompareSlots, stable): ds
// itself when it is in that order already, which callers only read, else
// a sorted copy. A spec.Device is a large struct (over a kilobyte), so the
// order is found on slots parsed once each, not by moving devices around
// and parsing both slots in every comparison: over 100,000 devices that
// was a tenth of a plan's CPU.
func sortedDevices(ds []spec.Device) []spec.Device {
	type key struct {
		slot spec.Slot
		ok   bool
		raw  string
		i    int
	}
	keys := make([]key, len(ds))
	for i := range ds {
		s, ok := spec.ParseSlot(ds[i].Slot)
		keys[i] = key{s, ok, ds[i].Slot, i}
	}
	compare := func(a, b key) int { // spec.CompareSlots on parsed slots
		switch {
		case a.ok && b.ok:
			return a.slot.Compare(b.slot)
		case a.ok:
			return -1
		case b.ok:
			return 1
		}
		return strings.Compare(a.raw, b.raw)
	}
	if slices.IsSortedFunc(keys, compare) {
		return ds
	}
	slices.SortStableFunc(keys, compare)
	out := make([]spec.Device, len(ds))
	for i, k := range keys {
		out[i] = ds[k.i]
	}
	return out
}
