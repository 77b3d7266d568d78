package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// slotInput is one desired device and what the plan knows of its slot.
type slotInput struct {
	d *spec.Device
	l *Live // the device the slot keeps; nil when the slot is empty
	// rebuild and replace are the reasons --rebuild and --replace give
	// for this slot, "" when they do not select it.
	rebuild, replace string
	// runs settles the pending markers of runs that finished (Runs).
	runs Runs
}

// diffs is what differs between a desired device and its live device, by
// what a difference costs: forces a replacement, a rebuild (the boot
// configuration), or an update (a PUT).
type diffs struct {
	forces, boot, mutable []AttrDiff
	// reasons explain the differences to a person, in attribute order.
	reasons []string
}

// diffDevice compares one desired device with the device kept in its slot
// and returns the change it needs; false means no change.
func diffDevice(f *spec.Fleet, in slotInput, cat *Catalogue) (Change, bool) {
	d, l := in.d, in.l
	if l == nil {
		return Change{Action: Create, Wave: d.Wave, Desired: d,
			Reasons: []string{"slot " + d.Slot + " has no device"}, Attrs: createAttrs(d)}, true
	}
	return decide(f, in, diffSlot(d, l, cat, in.runs))
}

// diffSlot collects every difference of d and l.
func diffSlot(d *spec.Device, l *Live, cat *Catalogue, runs Runs) diffs {
	x := diffs{forces: immutableDiffs(d, l, cat), boot: bootDiffs(d, l)}
	if m, ok := l.Marker(); ok && !runs.Sent(m.Run, l.ID) {
		// The PUT of a rebuild may have been accepted but its reboot or
		// reinstall was not known to be (the run was killed in between,
		// or the action failed): the device may still run the old image,
		// whatever its userdata and rev tag say.
		x.reasons = append(x.reasons, fmt.Sprintf("rebuild to rev %s was interrupted before its %s was accepted", orNone(m.To), "reboot or reinstall"))
		x.boot = append(x.boot, AttrDiff{Name: "rev", Before: orNone(m.From) + " (pending " + orNone(m.To) + ")", After: d.Rev})
	}
	// The rev tag covers the script even where it cannot be read. A rev
	// difference not explained by attributes compared on their own means:
	// with ipxe_script_url, the script behind the URL changed (rebuild);
	// with the script in userdata, which was compared byte for byte, only
	// the tag is stale (an update).
	revDiff := l.Rev() != d.Rev
	if revDiff && len(x.boot) == 0 && len(x.forces) == 0 && d.IPXEScriptURL != "" && !revExplained(d, l) {
		x.reasons = append(x.reasons, fmt.Sprintf("script behind ipxe_script_url changed (rev %s -> %s)", orNone(l.Rev()), d.Rev))
		x.boot = append(x.boot, AttrDiff{Name: "rev", Before: l.Rev(), After: d.Rev})
	}
	x.mutable = mutableDiffs(d, l, cat)
	// Otherwise a rev difference is either explained by the mutable
	// attributes or the tag is merely stale (written by another version,
	// or the zone was respelled): the PUT rewrites it.
	staleTag := revDiff && len(x.boot) == 0 && len(x.forces) == 0 && len(x.mutable) == 0
	if revDiff && len(x.boot) == 0 && len(x.forces) == 0 {
		x.mutable = append(x.mutable, AttrDiff{Name: "rev", Before: l.Rev(), After: d.Rev})
	}
	x.reasons = append(x.reasons, attrReasons(x)...)
	if staleTag {
		x.reasons = append(x.reasons, fmt.Sprintf("rev tag is stale: %s -> %s (boot config unchanged)", orNone(l.Rev()), d.Rev))
	}
	return x
}

// immutableDiffs are the differences that force a replacement.
func immutableDiffs(d *spec.Device, l *Live, cat *Catalogue) []AttrDiff {
	var out []AttrDiff
	if l.Machine != d.Machine {
		out = append(out, AttrDiff{Name: "machine", Before: l.Machine, After: d.Machine, Forces: true})
	}
	if !zoneMatches(d.Zone, l, cat) {
		out = append(out, AttrDiff{Name: "zone", Before: liveZone(l, cat), After: d.Zone, Forces: true})
	}
	// An empty live billing cycle means the API did not say; it is not a
	// difference, or every device would be replaced forever.
	if l.Billing != "" && l.Billing != d.Billing {
		out = append(out, AttrDiff{Name: "billing", Before: l.Billing, After: d.Billing, Forces: true})
	}
	return out
}

// bootDiffs are the differences of the boot configuration the API shows
// (a rebuild).
func bootDiffs(d *spec.Device, l *Live) []AttrDiff {
	var out []AttrDiff
	if want := d.APIUserdata(); l.Userdata != want {
		name := "userdata"
		if d.IPXEScriptURL == "" {
			name = "script"
		}
		out = append(out, AttrDiff{Name: name, Before: describeText(l.Userdata), After: describeText(want)})
		if kb, ka := kernelOf(l.Userdata), kernelOf(want); kb != ka {
			out = append(out, AttrDiff{Name: "kernel", Before: kb, After: ka})
		}
	}
	if l.ScriptURL != d.IPXEScriptURL {
		out = append(out, AttrDiff{Name: "ipxe_script_url", Before: l.ScriptURL, After: d.IPXEScriptURL})
	}
	return out
}

// mutableDiffs are the differences fixed in place (an update): one PUT,
// and for the network the port calls that follow it (network.go).
func mutableDiffs(d *spec.Device, l *Live, cat *Catalogue) []AttrDiff {
	var out []AttrDiff
	if l.Hostname != d.Hostname {
		out = append(out, AttrDiff{Name: "hostname", Before: l.Hostname, After: d.Hostname})
	}
	if lt, dt := userTags(l.Tags), normTags(d.UserTags); !slices.Equal(lt, dt) {
		out = append(out, AttrDiff{Name: "tags", Before: fmtList(lt), After: fmtList(dt)})
	}
	if l.AlwaysPXE != d.AlwaysPXE {
		out = append(out, AttrDiff{Name: "always_pxe", Before: strconv.FormatBool(l.AlwaysPXE), After: strconv.FormatBool(d.AlwaysPXE)})
	}
	return append(out, networkDiffs(d, l, cat)...)
}

// attrReasons words the attribute differences; rev differences have their
// own reasons.
func attrReasons(x diffs) []string {
	var out []string
	for _, a := range x.forces {
		out = append(out, fmt.Sprintf("%s: %s -> %s (forces replacement)", a.Name, orNone(a.Before), a.After))
	}
	for _, a := range x.boot {
		switch a.Name {
		case "rev":
		case "script", "userdata":
			out = append(out, a.Name+" changed")
		default:
			out = append(out, fmt.Sprintf("%s: %s -> %s", a.Name, orNone(a.Before), orNone(a.After)))
		}
	}
	for _, a := range x.mutable {
		if a.Name != "rev" {
			out = append(out, fmt.Sprintf("%s: %s -> %s", a.Name, orNone(a.Before), orNone(a.After)))
		}
	}
	return out
}

// decide turns the differences of one slot into its change: replace when
// the device failed, --replace selects it or an immutable attribute
// differs; rebuild when the boot configuration differs, --rebuild selects
// it or its last boot failed; update when only mutable attributes differ.
func decide(f *spec.Fleet, in slotInput, x diffs) (Change, bool) {
	d, l := in.d, in.l
	c := Change{Wave: d.Wave, Desired: d, Live: l}
	reasons, attrs := x.reasons, slices.Concat(x.forces, x.boot, x.mutable)
	switch {
	case l.State == StateFailed:
		c.Action = Replace
		reasons = append([]string{"device is failed"}, reasons...)
		attrs = append([]AttrDiff{{Name: "state", Before: StateFailed, After: StateActive, Forces: true}}, attrs...)
	case !l.TerminationTime.IsZero(): // hardware.go
		c.Action = Replace
		reasons = append([]string{terminatingReason(l)}, reasons...)
	case in.replace != "":
		c.Action = Replace
		reasons = append([]string{in.replace}, reasons...)
	case len(x.forces) > 0:
		c.Action = Replace
	case len(x.boot) > 0 || in.rebuild != "" || l.UserState == UserStateFailed:
		// A device whose last boot failed is rebuilt even when its boot
		// config is current: after a halted rollout (or an image fixed in
		// place) re-running apply must boot it again, not call it done.
		c.Action = Rebuild
		if in.rebuild != "" {
			reasons = append(reasons, in.rebuild)
		}
		if l.UserState == UserStateFailed {
			if len(x.boot) == 0 {
				reasons = append(reasons, "last boot failed: "+orNone(l.UserStateBody))
			}
			attrs = append(attrs, AttrDiff{Name: "booted", Before: UserStateFailed, After: "succeeded"})
		}
		strategy, note := f.Rollout.Rebuild.For(d.AlwaysPXE)
		c.Strategy = strategy
		if note != "" {
			reasons = append(reasons, note)
		}
	case len(x.mutable) > 0:
		c.Action = Update
	default:
		return Change{}, false
	}
	if c.Action == Replace || (c.Action == Rebuild && !c.Strategy.InPlace()) {
		attrs = append(attrs, AttrDiff{Name: "id", Before: l.ID, After: KnownAfterApply})
	}
	// The rev tag always follows the desired device after any change.
	if l.Rev() != d.Rev && !slices.ContainsFunc(attrs, func(a AttrDiff) bool { return a.Name == "rev" }) {
		attrs = append(attrs, AttrDiff{Name: "rev", Before: l.Rev(), After: d.Rev})
	}
	c.Reasons = reasons
	c.Attrs = attrs
	return c, true
}

// revExplained reports whether the live rev tag is what the desired boot
// configuration hashes to once the attributes that are compared on their
// own are taken as the device has them: always_pxe (an update, not a
// rebuild) and the zone spelling (a device in ams1 matches zone "am" too).
func revExplained(d *spec.Device, l *Live) bool {
	b := d.BootConfig()
	for _, b.Zone = range []string{d.Zone, l.Facility, l.Metro} {
		for _, b.AlwaysPXE = range []bool{l.AlwaysPXE, d.AlwaysPXE} {
			if b.Rev() == l.Rev() {
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
	attrs = append(attrs, networkCreateAttrs(d)...)
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
