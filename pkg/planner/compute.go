package planner

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Device states the planner treats specially.
const (
	StateActive         = "active"
	StateProvisioning   = "provisioning"
	StateQueued         = "queued"
	StateFailed         = "failed"
	StateDeprovisioning = "deprovisioning"
	StateDeleted        = "deleted"
)

// UserStateFailed is the user state a device posts when its boot failed
// (DESIGN section 1); the planner rebuilds such a device.
const UserStateFailed = "failed"

// RebuildAll is the --rebuild target that selects every desired device.
const RebuildAll = "all"

// Ignored reports whether a device in this state is on its way out and is
// therefore neither planned for nor fingerprinted.
func Ignored(state string) bool {
	return state == StateDeprovisioning || state == StateDeleted
}

// Compute diffs the desired devices against the live ones and returns the
// ordered changes that make the live fleet match (DESIGN sections 5 and 6).
// It is pure: the same Input always yields the same Plan, whatever the
// order of its slices.
func Compute(in Input) (Plan, error) {
	if in.Fleet == nil {
		return Plan{}, errors.New("compute plan: no fleet given")
	}
	if err := CheckNetwork(in); err != nil {
		return Plan{}, err
	}
	f := in.Fleet
	p := Plan{
		Fleet:            f.Name,
		File:             f.File,
		Project:          f.Project,
		Rollout:          f.Rollout,
		LiveFingerprint:  LiveFingerprint(in.Live),
		FleetFingerprint: in.FleetFingerprint,
	}

	desired := sortedDevices(in.Desired)
	want, err := desiredSlots(f, desired)
	if err != nil {
		return Plan{}, err
	}
	rebuild, err := resolveRebuild(f, desired, in.Rebuild)
	if err != nil {
		return Plan{}, err
	}
	replace, err := resolveReplace(f, want, in.Replace)
	if err != nil {
		return Plan{}, err
	}

	ls := partitionLive(f.Name, in.Live, in.Foreign)
	p.Warnings = append(p.Warnings, ls.warnings...)
	bySlot := ls.bySlot
	// quiet are the slots without a change whose device carries a pending
	// marker (settled): candidates for settledCleanup.
	var quiet []Change

	for i := range desired {
		// Compared in place: copying each desired device (and the kept
		// live one) to the heap cost 90 MB over 100,000 unchanged slots.
		// A change gets copies of its own, so a plan never aliases the
		// caller's devices or listing (keep points into in.Live).
		d := &desired[i]
		if d.Rev == "" {
			own := *d
			own.Rev = own.ComputeRev()
			d = &own
		}
		keep, dups := pickKeeper(bySlot[d.Slot])
		for _, dup := range dups {
			p.Changes = append(p.Changes, duplicateDelete(d.Slot, d.Wave, dup, keep))
		}
		c, changed := diffDevice(f, slotInput{d: d, l: keep, rebuild: rebuild[d.Slot], replace: replace[d.Slot], runs: in.Runs}, in.Catalogue)
		if changed {
			if c.Desired != nil {
				own := *c.Desired
				c.Desired = &own
			}
			if c.Live != nil {
				own := *c.Live
				c.Live = &own
			}
			p.Changes = append(p.Changes, c)
		} else {
			p.NoOps++
			if keep != nil && keep.Pending() != "" {
				own, k := *d, *keep
				quiet = append(quiet, Change{Wave: d.Wave, Desired: &own, Live: &k})
			}
		}
	}
	for _, slot := range ls.slots {
		if want[slot] {
			continue
		}
		reason, wave := undesiredReason(f, slot)
		for _, l := range bySlot[slot] {
			p.Changes = append(p.Changes, deleteChange(wave, *l, reason))
		}
	}
	settledCleanup(&p, in.Runs, quiet) // pending.go
	slices.SortStableFunc(p.Changes, compareChanges)
	p.Warnings = append(p.Warnings, clashWarnings(f.Name, desired, ls.foreign)...)
	return p, nil
}

// desiredSlots checks the desired devices (a readable slot, a wave of the
// rollout, each slot once) and returns their slots.
func desiredSlots(f *spec.Fleet, desired []spec.Device) (map[string]bool, error) {
	want := make(map[string]bool, len(desired))
	for _, d := range desired {
		if _, ok := spec.ParseSlot(d.Slot); !ok {
			return nil, fmt.Errorf("compute plan for fleet %q: desired device %q has an invalid slot %q", f.Name, d.Hostname, d.Slot)
		}
		if d.Wave < 0 || (len(f.Rollout.Waves) > 0 && d.Wave >= len(f.Rollout.Waves)) {
			return nil, fmt.Errorf("compute plan for fleet %q: slot %s is in wave %d, which the rollout does not have", f.Name, d.Slot, d.Wave)
		}
		if want[d.Slot] {
			return nil, fmt.Errorf("compute plan for fleet %q: slot %s is desired twice", f.Name, d.Slot)
		}
		want[d.Slot] = true
	}
	return want, nil
}

// liveSet is the live devices partitioned: the fleet's by slot (slots in
// order), the rest foreign, and warnings about fleet devices whose slot
// cannot be read.
type liveSet struct {
	bySlot   map[string][]*Live // into the listing, which is only read
	slots    []string
	foreign  []Live
	warnings []string
}

// partitionLive sorts and partitions the listings. Sorting first makes
// every later loop (and so every warning) deterministic. Devices on their
// way out are left out.
func partitionLive(fleet string, listed, foreign []Live) liveSet {
	// Each device's slot is read from its tags and parsed once, not in
	// every compare, and the devices are sorted by index: a Live is
	// about 400 bytes, and moving 100,000 of them around was a tenth of
	// a plan's allocations.
	type keyed struct {
		slot   string
		parsed spec.Slot
		ok     bool
		i      int
	}
	keys := make([]keyed, len(listed))
	for i := range listed {
		slot := listed[i].Slot()
		parsed, ok := spec.ParseSlot(slot)
		keys[i] = keyed{slot, parsed, ok, i}
	}
	slices.SortStableFunc(keys, func(a, b keyed) int {
		var bySlot int // spec.CompareSlots on the parsed slots
		switch {
		case a.ok && b.ok:
			bySlot = a.parsed.Compare(b.parsed)
		case a.ok:
			bySlot = -1
		case b.ok:
			bySlot = 1
		default:
			bySlot = strings.Compare(a.slot, b.slot)
		}
		return cmp.Or(bySlot, cmp.Compare(listed[a.i].ID, listed[b.i].ID))
	})
	ls := liveSet{bySlot: map[string][]*Live{}}
	// The fleet's devices in slot order, in one array of pointers into
	// listed: a slot's devices are next to each other, and bySlot holds
	// capped slices of it.
	var own []*Live
	start, cur := 0, ""
	for _, k := range keys {
		l, slot := &listed[k.i], k.slot
		switch {
		case Ignored(l.State):
		case l.Fleet() != fleet:
			ls.foreign = append(ls.foreign, *l)
		case !k.ok:
			ls.warnings = append(ls.warnings, unreadableSlotWarning(fleet, *l))
		default:
			if own == nil {
				own = make([]*Live, 0, len(listed)-len(ls.foreign))
			}
			if len(own) > start && slot != cur {
				ls.bySlot[cur] = own[start:len(own):len(own)]
				start = len(own)
			}
			if len(own) == start {
				ls.slots = append(ls.slots, slot)
				cur = slot
			}
			own = append(own, l)
		}
	}
	if len(own) > start {
		ls.bySlot[cur] = own[start:len(own):len(own)]
	}
	for _, l := range foreign {
		if !Ignored(l.State) && l.Fleet() != fleet {
			ls.foreign = append(ls.foreign, l)
		}
	}
	return ls
}

// compareChanges orders a plan: by wave, then slot (naturally), then the
// action order of the Action constants, then device id.
func compareChanges(a, b Change) int {
	return cmp.Or(
		cmp.Compare(a.Wave, b.Wave),
		spec.CompareSlots(a.Slot(), b.Slot()),
		cmp.Compare(actionRank(a.Action), actionRank(b.Action)),
		cmp.Compare(a.DeviceID(), b.DeviceID()),
	)
}

func actionRank(a Action) int {
	switch a {
	case NoOp:
		return 0
	case Create:
		return 1
	case Delete:
		return 2
	case Replace:
		return 3
	case Rebuild:
		return 4
	case Update:
		return 5
	}
	return 6
}

// resolveRebuild maps each slot selected by the --rebuild targets to the
// reason shown for it. A target that selects nothing is an error: a typo
// in a nightly job must not silently rebuild nothing.
func resolveRebuild(f *spec.Fleet, desired []spec.Device, targets []string) (map[string]string, error) {
	out := map[string]string{}
	groups := map[string]bool{}
	for _, g := range f.Groups {
		groups[g.Name] = true
	}
	slots := map[string]bool{}
	for _, d := range desired {
		slots[d.Slot] = true
	}
	// The most specific target names the reason (slot, then group, then
	// all), so the order of the flags does not change the plan.
	rank := map[string]int{}
	for _, t := range targets {
		switch {
		case t == RebuildAll || groups[t] || slots[t]:
		default:
			return nil, fmt.Errorf("compute plan for fleet %q: --rebuild %q: no group or desired slot has that name (want %q, a group name or a slot such as group/zone/1)", f.Name, t, RebuildAll)
		}
		for _, d := range desired {
			r := 0
			switch t {
			case d.Slot:
				r = 3
			case d.Group:
				r = 2
			case RebuildAll:
				r = 1
			}
			if r > rank[d.Slot] {
				rank[d.Slot] = r
				out[d.Slot] = "rebuild requested (--rebuild " + t + ")"
			}
		}
	}
	return out, nil
}

func resolveReplace(f *spec.Fleet, want map[string]bool, targets []string) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range targets {
		if !want[t] {
			return nil, fmt.Errorf("compute plan for fleet %q: --replace %q: not a desired slot (want group/zone/index, e.g. web/ams1/1)", f.Name, t)
		}
		out[t] = "replacement requested (--replace " + t + ")"
	}
	return out, nil
}

// pickKeeper chooses the device a slot keeps: the oldest by created_at
// among the devices that are not failed, then the smallest id; when every
// device failed, the oldest of them. The rest are duplicates.
//
// The rule must give the same answer to every observer at any moment (two
// applies, or a plan and a later apply, must never each keep a device the
// other deletes, or the slot ends empty). A device's creation time and id
// never change, and "failed" is a state a device does not leave by itself,
// so the choice only ever moves off a device that failed. States that
// change with time (provisioning -> active) therefore take no part:
// preferring the active device made the first observer keep the old
// device while the new one provisioned and the second keep the new one
// once it was active, each deleting the other's keeper. The executor adds
// the other half (see docs/executor.md): a duplicate that is not failed is
// deleted only once another device of its slot is ready.
func pickKeeper(ls []*Live) (*Live, []Live) {
	switch len(ls) {
	case 0:
		return nil, nil
	case 1:
		return ls[0], nil
	}
	s := make([]Live, len(ls))
	for i, l := range ls {
		s[i] = *l
	}
	slices.SortStableFunc(s, func(a, b Live) int {
		return cmp.Or(
			cmp.Compare(b2i(a.State == StateFailed), b2i(b.State == StateFailed)),
			a.CreatedAt.Compare(b.CreatedAt),
			cmp.Compare(a.ID, b.ID),
		)
	})
	keep := s[0]
	return &keep, s[1:]
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func duplicateDelete(slot string, wave int, dup Live, keep *Live) Change {
	reason := fmt.Sprintf("duplicate in slot %s: keeping %s device %s", slot, keep.State, keep.ID)
	c := deleteChange(wave, dup, reason)
	c.Keeper = keep.ID
	return c
}

func deleteChange(wave int, l Live, reason string) Change {
	l2 := l
	return Change{
		Action:  Delete,
		Wave:    wave,
		Live:    &l2,
		Reasons: []string{reason},
		Attrs: []AttrDiff{
			{Name: "id", Before: l.ID},
			{Name: "hostname", Before: l.Hostname},
			{Name: "machine", Before: l.Machine},
			{Name: "zone", Before: l.Facility},
			{Name: "state", Before: l.State},
		},
	}
}

// undesiredReason says why a live slot is no longer wanted, and which wave
// its delete belongs to: the wave of its zone, else the last wave.
func undesiredReason(f *spec.Fleet, slot string) (string, int) {
	s, _ := spec.ParseSlot(slot)
	wave := f.Rollout.WaveOf(s.Zone)
	if wave < 0 {
		wave = max(len(f.Rollout.Waves)-1, 0)
	}
	i := slices.IndexFunc(f.Groups, func(g spec.Group) bool { return g.Name == s.Group })
	if i < 0 {
		return fmt.Sprintf("group %q removed from the fleet", s.Group), wave
	}
	g := f.Groups[i]
	if !slices.Contains(g.Zones, s.Zone) {
		return fmt.Sprintf("zone %q removed from group %q", s.Zone, s.Group), wave
	}
	if s.Index > g.Count {
		return fmt.Sprintf("scale down: group %q wants %d per zone, this is index %d in %s", s.Group, g.Count, s.Index, s.Zone), wave
	}
	return fmt.Sprintf("slot %s is no longer desired", slot), wave
}

func unreadableSlotWarning(fleet string, l Live) string {
	what := fmt.Sprintf("an unreadable slot tag %q", spec.TagSlot+l.Slot())
	if l.Slot() == "" {
		what = "no slot tag"
	}
	return fmt.Sprintf("device %s (hostname %q) carries the tag of fleet %q but %s; it is left alone", l.ID, l.Hostname, fleet, what)
}

// clashWarnings warns about foreign devices that share a desired hostname:
// they are never touched, but two machines answering to one name surprise
// people.
func clashWarnings(fleet string, desired []spec.Device, foreign []Live) []string {
	byHost := map[string][]Live{}
	for _, l := range foreign {
		byHost[l.Hostname] = append(byHost[l.Hostname], l)
	}
	var out []string
	for _, d := range desired {
		ls := slices.Clone(byHost[d.Hostname])
		slices.SortFunc(ls, func(a, b Live) int { return cmp.Compare(a.ID, b.ID) })
		ls = slices.CompactFunc(ls, func(a, b Live) bool { return a.ID == b.ID })
		for _, l := range ls {
			owner := "is not part of fleet " + strconv.Quote(fleet)
			if l.Fleet() != "" {
				owner = "belongs to fleet " + strconv.Quote(l.Fleet())
			}
			out = append(out, fmt.Sprintf("hostname %q (slot %s) is also used by device %s, which %s; that device is left alone", d.Hostname, d.Slot, l.ID, owner))
		}
	}
	return out
}
