package planner

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
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
	want := make(map[string]bool, len(desired))
	for _, d := range desired {
		if _, ok := ParseSlot(d.Slot); !ok {
			return Plan{}, fmt.Errorf("compute plan for fleet %q: desired device %q has an invalid slot %q", f.Name, d.Hostname, d.Slot)
		}
		if d.Wave < 0 || (len(f.Rollout.Waves) > 0 && d.Wave >= len(f.Rollout.Waves)) {
			return Plan{}, fmt.Errorf("compute plan for fleet %q: slot %s is in wave %d, which the rollout does not have", f.Name, d.Slot, d.Wave)
		}
		if want[d.Slot] {
			return Plan{}, fmt.Errorf("compute plan for fleet %q: slot %s is desired twice", f.Name, d.Slot)
		}
		want[d.Slot] = true
	}
	rebuild, err := resolveRebuild(f, desired, in.Rebuild)
	if err != nil {
		return Plan{}, err
	}
	replace, err := resolveReplace(f, want, in.Replace)
	if err != nil {
		return Plan{}, err
	}

	// Partition the live devices: ours by slot, the rest foreign. Sorting
	// first makes every later loop (and so every warning) deterministic.
	live := slices.Clone(in.Live)
	slices.SortStableFunc(live, func(a, b Live) int {
		return cmp.Or(CompareSlots(a.Slot, b.Slot), cmp.Compare(a.ID, b.ID))
	})
	bySlot := map[string][]Live{}
	var liveSlots []string
	var foreign []Live
	for _, l := range live {
		if Ignored(l.State) {
			continue
		}
		if l.Fleet != f.Name {
			foreign = append(foreign, l)
			continue
		}
		if _, ok := ParseSlot(l.Slot); !ok {
			p.Warnings = append(p.Warnings, unreadableSlotWarning(f.Name, l))
			continue
		}
		if bySlot[l.Slot] == nil {
			liveSlots = append(liveSlots, l.Slot)
		}
		bySlot[l.Slot] = append(bySlot[l.Slot], l)
	}
	for _, l := range in.Foreign {
		if !Ignored(l.State) && l.Fleet != f.Name {
			foreign = append(foreign, l)
		}
	}

	for i := range desired {
		d := desired[i]
		if d.Rev == "" {
			d.Rev = d.ComputeRev()
		}
		keep, dups := pickKeeper(bySlot[d.Slot])
		for _, dup := range dups {
			p.Changes = append(p.Changes, duplicateDelete(d.Slot, d.Wave, dup, keep))
		}
		c, changed := diffDevice(f, &d, keep, rebuild[d.Slot], replace[d.Slot], in.Catalogue)
		if changed {
			p.Changes = append(p.Changes, c)
		} else {
			p.NoOps++
		}
	}
	for _, slot := range liveSlots {
		if want[slot] {
			continue
		}
		reason, wave := undesiredReason(f, slot)
		for _, l := range bySlot[slot] {
			p.Changes = append(p.Changes, deleteChange(slot, wave, l, reason))
		}
	}
	slices.SortStableFunc(p.Changes, compareChanges)
	p.Warnings = append(p.Warnings, clashWarnings(f.Name, desired, foreign)...)
	return p, nil
}

// compareChanges orders a plan: by wave, then slot (naturally), then the
// action order of the Action constants, then device id.
func compareChanges(a, b Change) int {
	return cmp.Or(
		cmp.Compare(a.Wave, b.Wave),
		CompareSlots(a.Slot, b.Slot),
		cmp.Compare(actionRank(a.Action), actionRank(b.Action)),
		cmp.Compare(a.DeviceID, b.DeviceID),
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

// healthRank orders the devices of one slot for keeping: active first, then
// on its way up, then anything else, failed last.
func healthRank(state string) int {
	switch state {
	case StateActive:
		return 0
	case StateProvisioning, StateQueued:
		return 1
	case StateFailed:
		return 3
	}
	return 2
}

// pickKeeper chooses the device a slot keeps: the healthiest, then the
// newest, then the smallest id (so two runs agree). The rest are duplicates.
func pickKeeper(ls []Live) (*Live, []Live) {
	if len(ls) == 0 {
		return nil, nil
	}
	s := slices.Clone(ls)
	slices.SortStableFunc(s, func(a, b Live) int {
		return cmp.Or(
			cmp.Compare(healthRank(a.State), healthRank(b.State)),
			b.CreatedAt.Compare(a.CreatedAt),
			cmp.Compare(a.ID, b.ID),
		)
	})
	keep := s[0]
	return &keep, s[1:]
}

func duplicateDelete(slot string, wave int, dup Live, keep *Live) Change {
	reason := fmt.Sprintf("duplicate in slot %s: keeping %s device %s", slot, keep.State, keep.ID)
	return deleteChange(slot, wave, dup, reason)
}

func deleteChange(slot string, wave int, l Live, reason string) Change {
	l2 := l
	return Change{
		Action:   Delete,
		Slot:     slot,
		Hostname: l.Hostname,
		Wave:     wave,
		DeviceID: l.ID,
		Live:     &l2,
		Reasons:  []string{reason},
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
	s, _ := ParseSlot(slot)
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

// diffDevice compares one desired device with the device kept in its slot
// and returns the change it needs; false means no change.
func diffDevice(f *spec.Fleet, d *spec.Device, l *Live, rebuildReason, replaceReason string, cat *Catalogue) (Change, bool) {
	c := Change{Slot: d.Slot, Hostname: d.Hostname, Wave: d.Wave, Desired: d}
	if l == nil {
		c.Action = Create
		c.Reasons = []string{"slot " + d.Slot + " has no device"}
		c.Attrs = createAttrs(d)
		return c, true
	}
	c.DeviceID = l.ID
	c.Live = l

	var forces, boot, mutable []AttrDiff
	var reasons []string

	// Immutable attributes: a difference forces a replacement.
	if l.Machine != d.Machine {
		forces = append(forces, AttrDiff{Name: "machine", Before: l.Machine, After: d.Machine, Forces: true})
	}
	if !zoneMatches(d.Zone, l, cat) {
		forces = append(forces, AttrDiff{Name: "zone", Before: liveZone(l, cat), After: d.Zone, Forces: true})
	}
	// An empty live billing cycle means the API did not say; it is not a
	// difference, or every device would be replaced forever.
	if l.Billing != "" && l.Billing != d.Billing {
		forces = append(forces, AttrDiff{Name: "billing", Before: l.Billing, After: d.Billing, Forces: true})
	}

	// Boot configuration: a difference means a rebuild.
	wantUserdata := d.APIUserdata()
	if l.Userdata != wantUserdata {
		name := "userdata"
		if d.IPXEScriptURL == "" {
			name = "script"
		}
		boot = append(boot, AttrDiff{Name: name, Before: describeText(l.Userdata), After: describeText(wantUserdata)})
		if kb, ka := kernelOf(l.Userdata), kernelOf(wantUserdata); kb != ka {
			boot = append(boot, AttrDiff{Name: "kernel", Before: kb, After: ka})
		}
	}
	if l.ScriptURL != d.IPXEScriptURL {
		boot = append(boot, AttrDiff{Name: "ipxe_script_url", Before: l.ScriptURL, After: d.IPXEScriptURL})
	}
	// The rev tag covers the script even where it cannot be read. A rev
	// difference not explained by attributes compared on their own means:
	// with ipxe_script_url, the script behind the URL changed (rebuild);
	// with the script in userdata, which was compared byte for byte above,
	// only the tag is stale (an update).
	revDiff := l.Rev != d.Rev
	if revDiff && len(boot) == 0 && len(forces) == 0 && d.IPXEScriptURL != "" && !revExplained(d, l) {
		reasons = append(reasons, fmt.Sprintf("script behind ipxe_script_url changed (rev %s -> %s)", orNone(l.Rev), d.Rev))
		boot = append(boot, AttrDiff{Name: "rev", Before: l.Rev, After: d.Rev})
	}

	// Mutable attributes: a difference means an update.
	if l.Hostname != d.Hostname {
		mutable = append(mutable, AttrDiff{Name: "hostname", Before: l.Hostname, After: d.Hostname})
	}
	if lt, dt := userTags(l.Tags), normTags(d.UserTags); !slices.Equal(lt, dt) {
		mutable = append(mutable, AttrDiff{Name: "tags", Before: fmtList(lt), After: fmtList(dt)})
	}
	if l.AlwaysPXE != d.AlwaysPXE {
		mutable = append(mutable, AttrDiff{Name: "always_pxe", Before: strconv.FormatBool(l.AlwaysPXE), After: strconv.FormatBool(d.AlwaysPXE)})
	}
	mutable = append(mutable, networkDiffs(d, l, cat)...) // network.go
	// Otherwise a rev difference is either explained by the mutable
	// attributes above or the tag is merely stale (written by another
	// version, or the zone was respelled): the PUT rewrites it.
	staleTag := revDiff && len(boot) == 0 && len(forces) == 0 && len(mutable) == 0
	if revDiff && len(boot) == 0 && len(forces) == 0 {
		mutable = append(mutable, AttrDiff{Name: "rev", Before: l.Rev, After: d.Rev})
	}

	for _, a := range forces {
		reasons = append(reasons, fmt.Sprintf("%s: %s -> %s (forces replacement)", a.Name, orNone(a.Before), a.After))
	}
	for _, a := range boot {
		switch a.Name {
		case "rev":
		case "script", "userdata":
			reasons = append(reasons, a.Name+" changed")
		default:
			reasons = append(reasons, fmt.Sprintf("%s: %s -> %s", a.Name, orNone(a.Before), orNone(a.After)))
		}
	}
	for _, a := range mutable {
		if a.Name != "rev" {
			reasons = append(reasons, fmt.Sprintf("%s: %s -> %s", a.Name, orNone(a.Before), orNone(a.After)))
		}
	}
	if staleTag {
		reasons = append(reasons, fmt.Sprintf("rev tag is stale: %s -> %s (boot config unchanged)", orNone(l.Rev), d.Rev))
	}
	attrs := slices.Concat(forces, boot, mutable)

	switch {
	case l.State == StateFailed:
		c.Action = Replace
		reasons = append([]string{"device is failed"}, reasons...)
		attrs = append([]AttrDiff{{Name: "state", Before: StateFailed, After: StateActive, Forces: true}}, attrs...)
	case replaceReason != "":
		c.Action = Replace
		reasons = append([]string{replaceReason}, reasons...)
	case len(forces) > 0:
		c.Action = Replace
	case len(boot) > 0 || rebuildReason != "" || l.UserState == UserStateFailed:
		// A device whose last boot failed is rebuilt even when its boot
		// config is current: after a halted rollout (or an image fixed in
		// place) re-running apply must boot it again, not call it done.
		c.Action = Rebuild
		if rebuildReason != "" {
			reasons = append(reasons, rebuildReason)
		}
		if l.UserState == UserStateFailed {
			if len(boot) == 0 {
				reasons = append(reasons, "last boot failed: "+orNone(l.UserStateBody))
			}
			attrs = append(attrs, AttrDiff{Name: "booted", Before: UserStateFailed, After: "succeeded"})
		}
		strategy, note := strategyFor(f, d)
		c.Strategy = strategy
		if note != "" {
			reasons = append(reasons, note)
		}
	case len(mutable) > 0:
		c.Action = Update
	default:
		return Change{}, false
	}
	if c.Action == Replace || c.Strategy == spec.RebuildRecr {
		attrs = append(attrs, AttrDiff{Name: "id", Before: l.ID, After: KnownAfterApply})
	}
	// The rev tag always follows the desired device after any change.
	if l.Rev != d.Rev && !slices.ContainsFunc(attrs, func(a AttrDiff) bool { return a.Name == "rev" }) {
		attrs = append(attrs, AttrDiff{Name: "rev", Before: l.Rev, After: d.Rev})
	}
	c.Reasons = reasons
	c.Attrs = attrs
	return c, true
}

// strategyFor resolves the fleet's rebuild strategy for one device. A
// reboot only picks up a new script when the device PXE-boots on every
// boot, so without always_pxe it becomes a reinstall.
func strategyFor(f *spec.Fleet, d *spec.Device) (string, string) {
	s := f.Rollout.Rebuild
	if s == "" {
		if d.AlwaysPXE {
			return spec.RebuildReboot, ""
		}
		return spec.RebuildReins, ""
	}
	if s == spec.RebuildReboot && !d.AlwaysPXE {
		return spec.RebuildReins, "reinstall instead of reboot: without always_pxe a reboot does not load the new script"
	}
	return s, ""
}

// revExplained reports whether the live rev tag is what the desired boot
// configuration hashes to once the attributes that are compared on their
// own are taken as the device has them: always_pxe (an update, not a
// rebuild) and the zone spelling (a device in ams1 matches zone "am" too).
func revExplained(d *spec.Device, l *Live) bool {
	zones := []string{d.Zone, l.Facility, l.Metro}
	for _, z := range zones {
		for _, pxe := range []bool{l.AlwaysPXE, d.AlwaysPXE} {
			if spec.BootRev(d.Script, d.APIUserdata(), d.IPXEScriptURL, d.Machine, z, d.Billing, pxe) == l.Rev {
				return true
			}
		}
	}
	return false
}

// zoneMatches compares a desired zone, a facility or a metro code, with the
// live device's location: a facility zone must be the device's facility, a
// metro zone its metro. The two code spaces do not overlap.
func zoneMatches(zone string, l *Live, cat *Catalogue) bool {
	if zone == l.Facility {
		return true
	}
	metro := l.Metro
	if metro == "" {
		metro = cat.MetroOf(l.Facility)
	}
	return metro != "" && zone == metro
}

func liveZone(l *Live, cat *Catalogue) string {
	metro := l.Metro
	if metro == "" {
		metro = cat.MetroOf(l.Facility)
	}
	switch {
	case l.Facility == "":
		return metro
	case metro == "":
		return l.Facility
	}
	return l.Facility + " (" + metro + ")"
}

func createAttrs(d *spec.Device) []AttrDiff {
	attrs := []AttrDiff{
		{Name: "hostname", After: d.Hostname},
		{Name: "machine", After: d.Machine},
		{Name: "zone", After: d.Zone},
		{Name: "billing", After: d.Billing},
		{Name: "always_pxe", After: strconv.FormatBool(d.AlwaysPXE)},
		{Name: "image", After: d.Image.BaseURL + "/" + d.Image.Name},
	}
	if d.IPXEScriptURL != "" {
		attrs = append(attrs, AttrDiff{Name: "ipxe_script_url", After: d.IPXEScriptURL})
		if d.Userdata != "" {
			attrs = append(attrs, AttrDiff{Name: "userdata", After: describeText(d.Userdata)})
		}
	} else {
		attrs = append(attrs, AttrDiff{Name: "script", After: describeText(d.Script)})
	}
	attrs = append(attrs,
		AttrDiff{Name: "tags", After: fmtList(normTags(d.UserTags))},
	)
	attrs = append(attrs, networkCreateAttrs(d)...) // network.go
	attrs = append(attrs,
		AttrDiff{Name: "rev", After: d.Rev},
		AttrDiff{Name: "id", After: KnownAfterApply},
	)
	return attrs
}

// describeText stands for a script or userdata in a plan: its size and a
// short hash, enough to see that it changed without printing it (render
// shows scripts; userdata may hold a user's secrets).
func describeText(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	lines := strings.Count(strings.TrimRight(s, "\n"), "\n") + 1
	unit := "lines"
	if lines == 1 {
		unit = "line"
	}
	return fmt.Sprintf("sha256:%s (%d %s)", hex.EncodeToString(sum[:])[:12], lines, unit)
}

// kernelOf returns the URL of the first iPXE `kernel` command in a script,
// "" if none: the line that changes when an image moves, worth showing.
// Variables set earlier in the script are expanded, because the rendered
// scripts name the kernel as ${base-url}/NAME-kernel: unexpanded, every
// release would look the same to the person approving the plan.
func kernelOf(script string) string {
	vars := map[string]string{}
	expand := func(s string) string {
		for name, v := range vars {
			s = strings.ReplaceAll(s, "${"+name+"}", v)
		}
		return s
	}
	for line := range strings.Lines(script) {
		fields := strings.Fields(line)
		if len(fields) >= 3 && fields[0] == "set" {
			vars[fields[1]] = expand(strings.Join(fields[2:], " "))
			continue
		}
		if len(fields) < 2 || fields[0] != "kernel" {
			continue
		}
		for _, f := range fields[1:] {
			if !strings.HasPrefix(f, "--") {
				return expand(f)
			}
		}
	}
	return ""
}

// userTags returns a live device's own tags, without lkfleet's.
func userTags(tags []string) []string {
	var out []string
	for _, t := range tags {
		if !strings.HasPrefix(t, spec.TagPrefix) {
			out = append(out, t)
		}
	}
	return normTags(out)
}

// normTags sorts and de-duplicates tags: the API keeps them as a set.
func normTags(tags []string) []string {
	s := slices.Clone(tags)
	slices.Sort(s)
	s = slices.Compact(s)
	if len(s) == 0 {
		return nil
	}
	return s
}

func fmtList(s []string) string { return "[" + strings.Join(s, ", ") + "]" }

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func unreadableSlotWarning(fleet string, l Live) string {
	what := fmt.Sprintf("an unreadable slot tag %q", spec.TagSlot+l.Slot)
	if l.Slot == "" {
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
			if l.Fleet != "" {
				owner = "belongs to fleet " + strconv.Quote(l.Fleet)
			}
			out = append(out, fmt.Sprintf("hostname %q (slot %s) is also used by device %s, which %s; that device is left alone", d.Hostname, d.Slot, l.ID, owner))
		}
	}
	return out
}
