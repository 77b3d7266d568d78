package planner

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// t0 is the creation time of fixture devices; tests never read the clock.
var t0 = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)

var sshd = spec.Image{Key: "sshd", Name: "sshd", BaseURL: "https://img.example.com/2026-11-25", Cmdline: "console=ttyS1"}

// testFleet: web (2 per zone in ams1 and ewr1) and db (1 in ams1), two waves.
func testFleet() *spec.Fleet {
	return &spec.Fleet{
		File:    "lab.yml",
		Name:    "lab",
		Project: "9d6ae2b4-5a4c-4c1e-9a43-1f1b2c3d4e5f",
		Images:  []spec.Image{sshd},
		Groups: []spec.Group{
			{Name: "web", Image: "sshd", Count: 2, Zones: []string{"ams1", "ewr1"}, Machine: "c3.small.x86", Billing: "hourly", AlwaysPXE: true, Tags: []string{"lab"}},
			{Name: "db", Image: "sshd", Count: 1, Zones: []string{"ams1"}, Machine: "m3.large.x86", Billing: "hourly", AlwaysPXE: true},
		},
		Rollout: spec.Rollout{
			Waves:          [][]string{{"ams1"}, {"ewr1"}},
			MaxInFlight:    10,
			MaxUnavailable: spec.Budget{Count: 1},
			Rebuild:        spec.StrategyReboot,
		},
	}
}

func script(img spec.Image, slot string) string {
	return "#!ipxe\ndhcp\nkernel " + img.KernelURL() + " " + img.Cmdline + " lkfleet.slot=" + slot +
		"\ninitrd " + img.InitrdURL() + "\nboot\n"
}

// dev builds a rendered desired device of testFleet.
func dev(f *spec.Fleet, group, zone string, index int) spec.Device {
	var g spec.Group
	for _, x := range f.Groups {
		if x.Name == group {
			g = x
		}
	}
	slot := spec.SlotName(group, zone, index)
	d := spec.Device{
		Slot: slot, Fleet: f.Name, Group: group, Zone: zone, Index: index,
		Wave:     max(f.Rollout.WaveOf(zone), 0),
		Hostname: group + "-" + zone + "-" + strconv.Itoa(index),
		Machine:  g.Machine, Billing: g.Billing, AlwaysPXE: g.AlwaysPXE,
		Arch: spec.ArchX86, Image: sshd, UserTags: g.Tags,
	}
	d.Script = script(d.Image, slot)
	d.Rev = d.ComputeRev()
	return d
}

// desiredOf expands testFleet by hand (spec.Expand belongs to pkg/spec).
func desiredOf(f *spec.Fleet) []spec.Device {
	var out []spec.Device
	for _, g := range f.Groups {
		for _, z := range g.Zones {
			for i := 1; i <= g.Count; i++ {
				out = append(out, dev(f, g.Name, z, i))
			}
		}
	}
	return out
}

var metroOf = map[string]string{"ams1": "am", "ewr1": "ny", "sjc1": "sv"}

// liveOf is the live device that matches d exactly.
func liveOf(d spec.Device, id string) Live {
	return Live{
		ID: id, ShortID: id[:min(8, len(id))], Hostname: d.Hostname, State: StateActive,
		Tags:     append(append([]string{}, d.UserTags...), d.Tags()[len(d.UserTags):]...),
		Machine:  d.Machine,
		Facility: d.Zone, Metro: metroOf[d.Zone], Billing: d.Billing, AlwaysPXE: d.AlwaysPXE,
		Userdata: d.APIUserdata(), ScriptURL: d.IPXEScriptURL, CreatedAt: t0,
	}
}

// liveAll returns a matching live device for every desired one, ids d-01...
func liveAll(ds []spec.Device) []Live {
	out := make([]Live, 0, len(ds))
	for i, d := range ds {
		out = append(out, liveOf(d, fmt.Sprintf("d-%02d", i+1)))
	}
	return out
}

// orphan is a live fleet device in a slot testFleet may not want.
func orphan(id, slot, zone string) Live {
	return Live{ID: id, Hostname: "orphan-" + id, State: StateActive, Tags: ownTags("lab", slot, "000000000000"),
		Machine: "c3.small.x86", Facility: zone, Metro: metroOf[zone], Billing: "hourly", CreatedAt: t0}
}

// ownTags are the lkfleet tags of a device of fleet in slot at rev.
func ownTags(fleet, slot, rev string) []string {
	return spec.Device{Fleet: fleet, Slot: slot, Rev: rev}.Tags()
}

// setTag sets (or, with v "", removes) l's tag with prefix: how a test
// changes a live device's fleet, slot or rev.
func setTag(l *Live, prefix, v string) {
	l.Tags = slices.DeleteFunc(slices.Clone(l.Tags), func(t string) bool { return strings.HasPrefix(t, prefix) })
	if v != "" {
		l.Tags = append(l.Tags, prefix+v)
	}
}
