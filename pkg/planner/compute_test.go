package planner

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// key names a change in the tables: "action slot id" ("-" for no id).
func key(c Change) string {
	id := c.DeviceID()
	if id == "" {
		id = "-"
	}
	return fmt.Sprintf("%s %s %s", c.Action, c.Slot(), id)
}

func attrString(a AttrDiff) string {
	s := fmt.Sprintf("%s: %q -> %q", a.Name, a.Before, a.After)
	if a.Forces {
		s += " forces"
	}
	return s
}

func baseInput() Input {
	f := testFleet()
	ds := desiredOf(f)
	return Input{Fleet: f, Desired: ds, Live: liveAll(ds), FleetFingerprint: "sha256:fleet"}
}

// urlMode switches one desired device (and its live twin) to a script
// served from ipxe_script_url.
func urlMode(in *Input, slot string) (*spec.Device, *Live) {
	d := findDesired(in, slot)
	d.IPXEScriptURL = "https://boot.example.com/" + slot
	d.Userdata = "#cloud-config\n"
	d.Rev = d.ComputeRev()
	l := findLive(in, slot)
	*l = liveOf(*d, l.ID)
	return d, l
}

func findDesired(in *Input, slot string) *spec.Device {
	for i := range in.Desired {
		if in.Desired[i].Slot == slot {
			return &in.Desired[i]
		}
	}
	panic("no desired slot " + slot)
}

func findLive(in *Input, slot string) *Live {
	for i := range in.Live {
		if in.Live[i].Slot() == slot {
			return &in.Live[i]
		}
	}
	panic("no live slot " + slot)
}

func dropLive(in *Input, slot string) {
	in.Live = slices.DeleteFunc(in.Live, func(l Live) bool { return l.Slot() == slot })
}

type computeCase struct {
	name  string
	setup func(in *Input)
	// want lists every change, in plan order, as key() renders it.
	want []string
	// reasons, attrs and strategy are checked for the keys they name.
	reasons  map[string][]string
	attrs    map[string][]string
	strategy map[string]string
	warnings []string
	noops    int
}

func TestCompute(t *testing.T) {
	newScript := func(d *spec.Device) {
		d.Image.BaseURL = "https://img.example.com/2026-11-26"
		d.Script = script(d.Image, d.Slot)
		d.Rev = d.ComputeRev()
	}
	cases := []computeCase{
		{
			name:  "in sync",
			setup: func(in *Input) {},
			noops: 5,
		},
		{
			name:  "empty project creates everything, wave by wave",
			setup: func(in *Input) { in.Live = nil },
			want: []string{
				"create db/ams1/1 -", "create web/ams1/1 -", "create web/ams1/2 -",
				"create web/ewr1/1 -", "create web/ewr1/2 -",
			},
			reasons: map[string][]string{"create web/ewr1/2 -": {"slot web/ewr1/2 has no device"}},
			attrs: map[string][]string{"create db/ams1/1 -": {
				`hostname: "" -> "db-ams1-1"`, `machine: "" -> "m3.large.x86"`, `zone: "" -> "ams1"`,
				`billing: "" -> "hourly"`, `always_pxe: "" -> "true"`,
				`image: "" -> "https://img.example.com/2026-11-25/sshd"`,
				`script: "" -> "sha256:` + describeText(dev(testFleet(), "db", "ams1", 1).Script)[7:] + `"`,
				`tags: "" -> "[]"`, `rev: "" -> "` + dev(testFleet(), "db", "ams1", 1).Rev + `"`,
				`id: "" -> "(known after apply)"`,
			}},
		},
		{
			name: "deprovisioning and deleted devices are ignored",
			setup: func(in *Input) {
				findLive(in, "web/ams1/1").State = StateDeprovisioning
				findLive(in, "web/ewr1/1").State = StateDeleted
			},
			want:  []string{"create web/ams1/1 -", "create web/ewr1/1 -"},
			noops: 3,
		},
		{
			name: "duplicates: the active device is kept over a newer provisioning one",
			setup: func(in *Input) {
				d := findDesired(in, "web/ams1/1")
				dup := liveOf(*d, "d-99")
				dup.State = StateProvisioning
				dup.CreatedAt = t0.Add(time.Hour)
				in.Live = append(in.Live, dup)
			},
			want:    []string{"delete web/ams1/1 d-99"},
			reasons: map[string][]string{"delete web/ams1/1 d-99": {"duplicate in slot web/ams1/1: keeping active device d-01"}},
			attrs: map[string][]string{"delete web/ams1/1 d-99": {
				`id: "d-99" -> ""`, `hostname: "web-ams1-1" -> ""`, `machine: "c3.small.x86" -> ""`,
				`zone: "ams1" -> ""`, `state: "provisioning" -> ""`,
			}},
			noops: 5,
		},
		{
			name: "duplicates: of two active devices the newest is kept, both extra ones deleted",
			setup: func(in *Input) {
				d := findDesired(in, "web/ewr1/2")
				for i, id := range []string{"d-97", "d-98"} {
					l := liveOf(*d, id)
					l.CreatedAt = t0.Add(time.Duration(i+1) * time.Hour)
					in.Live = append(in.Live, l)
				}
			},
			want: []string{"delete web/ewr1/2 d-04", "delete web/ewr1/2 d-97"},
			reasons: map[string][]string{
				"delete web/ewr1/2 d-04": {"duplicate in slot web/ewr1/2: keeping active device d-98"},
				"delete web/ewr1/2 d-97": {"duplicate in slot web/ewr1/2: keeping active device d-98"},
			},
			noops: 5,
		},
		{
			name: "duplicates: same state and age keep the smallest id; queued beats failed",
			setup: func(in *Input) {
				d := findDesired(in, "db/ams1/1")
				dropLive(in, "db/ams1/1")
				a, b, c := liveOf(*d, "d-b"), liveOf(*d, "d-a"), liveOf(*d, "d-0")
				a.State, b.State, c.State = StateQueued, StateQueued, StateFailed
				c.CreatedAt = t0.Add(time.Hour)
				in.Live = append(in.Live, a, b, c)
			},
			want:  []string{"delete db/ams1/1 d-0", "delete db/ams1/1 d-b"},
			noops: 5,
		},
		{
			name: "a duplicate next to a changed keeper: deletes first, then the keeper's change",
			setup: func(in *Input) {
				d := findDesired(in, "web/ams1/2")
				dup := liveOf(*d, "d-00")
				dup.CreatedAt = t0.Add(-time.Hour)
				in.Live = append(in.Live, dup)
				findLive(in, "web/ams1/2").Hostname = "old"
			},
			want:  []string{"delete web/ams1/2 d-00", "update web/ams1/2 d-02"},
			noops: 4,
		},
		{
			name: "duplicates: a device on its way up beats one in another state",
			setup: func(in *Input) {
				d := findDesired(in, "web/ams1/2")
				l := findLive(in, "web/ams1/2")
				l.State = "powering_off"
				up := liveOf(*d, "d-88")
				up.State, up.CreatedAt = StateQueued, t0.Add(-time.Hour)
				in.Live = append(in.Live, up)
			},
			want:    []string{"delete web/ams1/2 d-02"},
			reasons: map[string][]string{"delete web/ams1/2 d-02": {"duplicate in slot web/ams1/2: keeping queued device d-88"}},
			noops:   5,
		},
		{
			name: "create with ipxe_script_url shows the URL and the user's userdata",
			setup: func(in *Input) {
				urlMode(in, "db/ams1/1")
				dropLive(in, "db/ams1/1")
			},
			want: []string{"create db/ams1/1 -"},
			attrs: map[string][]string{"create db/ams1/1 -": {
				`hostname: "" -> "db-ams1-1"`, `machine: "" -> "m3.large.x86"`, `zone: "" -> "ams1"`,
				`billing: "" -> "hourly"`, `always_pxe: "" -> "true"`,
				`image: "" -> "https://img.example.com/2026-11-25/sshd"`,
				`ipxe_script_url: "" -> "https://boot.example.com/db/ams1/1"`,
				`userdata: "" -> "` + describeText("#cloud-config\n") + `"`,
				`tags: "" -> "[]"`, `rev: "" -> "` + func() string {
					d := dev(testFleet(), "db", "ams1", 1)
					d.IPXEScriptURL, d.Userdata = "https://boot.example.com/db/ams1/1", "#cloud-config\n"
					return d.ComputeRev()
				}() + `"`,
				`id: "" -> "(known after apply)"`,
			}},
			noops: 4,
		},
		{
			name:    "failed device is replaced",
			setup:   func(in *Input) { findLive(in, "web/ewr1/1").State = StateFailed },
			want:    []string{"replace web/ewr1/1 d-03"},
			reasons: map[string][]string{"replace web/ewr1/1 d-03": {"device is failed"}},
			attrs: map[string][]string{"replace web/ewr1/1 d-03": {
				`state: "failed" -> "active" forces`, `id: "d-03" -> "(known after apply)"`,
			}},
			noops: 4,
		},
		{
			name: "scale down deletes the highest indexes",
			setup: func(in *Input) {
				in.Live = append(in.Live, orphan("d-30", "web/ewr1/3", "ewr1"), orphan("d-10", "web/ewr1/10", "ewr1"))
			},
			want: []string{"delete web/ewr1/3 d-30", "delete web/ewr1/10 d-10"},
			reasons: map[string][]string{
				"delete web/ewr1/10 d-10": {`scale down: group "web" wants 2 per zone, this is index 10 in ewr1`},
			},
			noops: 5,
		},
		{
			name: "scale to zero",
			setup: func(in *Input) {
				in.Fleet.Groups[1].Count = 0
				in.Desired = slices.DeleteFunc(in.Desired, func(d spec.Device) bool { return d.Group == "db" })
			},
			want:    []string{"delete db/ams1/1 d-05"},
			reasons: map[string][]string{"delete db/ams1/1 d-05": {`scale down: group "db" wants 0 per zone, this is index 1 in ams1`}},
			noops:   4,
		},
		{
			name: "group removed",
			setup: func(in *Input) {
				in.Fleet.Groups = in.Fleet.Groups[:1]
				in.Desired = slices.DeleteFunc(in.Desired, func(d spec.Device) bool { return d.Group == "db" })
			},
			want:    []string{"delete db/ams1/1 d-05"},
			reasons: map[string][]string{"delete db/ams1/1 d-05": {`group "db" removed from the fleet`}},
			noops:   4,
		},
		{
			name: "zone removed, in a zone no wave names: the last wave",
			setup: func(in *Input) {
				in.Live = append(in.Live, orphan("d-40", "web/sjc1/1", "sjc1"))
			},
			want:    []string{"delete web/sjc1/1 d-40"},
			reasons: map[string][]string{"delete web/sjc1/1 d-40": {`zone "sjc1" removed from group "web"`}},
			noops:   5,
		},
		{
			name:  "machine change forces replacement",
			setup: func(in *Input) { findLive(in, "web/ams1/1").Machine = "c2.medium.x86" },
			want:  []string{"replace web/ams1/1 d-01"},
			reasons: map[string][]string{"replace web/ams1/1 d-01": {
				"machine: c2.medium.x86 -> c3.small.x86 (forces replacement)",
			}},
			attrs: map[string][]string{"replace web/ams1/1 d-01": {
				`machine: "c2.medium.x86" -> "c3.small.x86" forces`, `id: "d-01" -> "(known after apply)"`,
			}},
			noops: 4,
		},
		{
			name: "facility change forces replacement",
			setup: func(in *Input) {
				l := findLive(in, "web/ams1/2")
				l.Facility, l.Metro = "ams2", "am"
			},
			want:    []string{"replace web/ams1/2 d-02"},
			reasons: map[string][]string{"replace web/ams1/2 d-02": {"zone: ams2 (am) -> ams1 (forces replacement)"}},
			noops:   4,
		},
		{
			name: "metro zone matches a device in a facility of that metro",
			setup: func(in *Input) {
				d := findDesired(in, "web/ams1/1")
				d.Zone = "am"
				d.Rev = d.ComputeRev()
				setTag(findLive(in, "web/ams1/1"), spec.TagRev, d.Rev)
				// and with the metro missing from the listing, via the catalogue
				d2 := findDesired(in, "web/ams1/2")
				d2.Zone = "am"
				d2.Rev = d2.ComputeRev()
				l2 := findLive(in, "web/ams1/2")
				l2.Metro = ""
				setTag(l2, spec.TagRev, d2.Rev)
				in.Catalogue = &Catalogue{Facilities: map[string]string{"ams1": "am"}}
			},
			noops: 5,
		},
		{
			name: "metro zone, device in another metro",
			setup: func(in *Input) {
				d := findDesired(in, "web/ewr1/1")
				d.Zone = "am"
				d.Rev = d.ComputeRev()
			},
			want:    []string{"replace web/ewr1/1 d-03"},
			reasons: map[string][]string{"replace web/ewr1/1 d-03": {"zone: ewr1 (ny) -> am (forces replacement)"}},
			noops:   4,
		},
		{
			name: "zone respelled from facility to its metro: only the rev tag is rewritten",
			setup: func(in *Input) {
				d := findDesired(in, "web/ams1/1")
				d.Zone = "am"
				d.Rev = d.ComputeRev()
			},
			want:    []string{"update web/ams1/1 d-01"},
			reasons: map[string][]string{"update web/ams1/1 d-01": {"rev tag is stale: " + dev(testFleet(), "web", "ams1", 1).Rev + " -> " + func() string { d := dev(testFleet(), "web", "ams1", 1); d.Zone = "am"; return d.ComputeRev() }() + " (boot config unchanged)"}},
			noops:   4,
		},
		{
			name:    "billing change forces replacement",
			setup:   func(in *Input) { findLive(in, "db/ams1/1").Billing = "monthly" },
			want:    []string{"replace db/ams1/1 d-05"},
			reasons: map[string][]string{"replace db/ams1/1 d-05": {"billing: monthly -> hourly (forces replacement)"}},
			noops:   4,
		},
		{
			name:  "a listing without billing is not a difference",
			setup: func(in *Input) { findLive(in, "db/ams1/1").Billing = "" },
			noops: 5,
		},
		{
			name:  "new image: the script in userdata changed, rebuild by reboot",
			setup: func(in *Input) { newScript(findDesired(in, "web/ams1/1")) },
			want:  []string{"rebuild web/ams1/1 d-01"},
			reasons: map[string][]string{"rebuild web/ams1/1 d-01": {
				"script changed",
				"kernel: https://img.example.com/2026-11-25/sshd-kernel -> https://img.example.com/2026-11-26/sshd-kernel",
			}},
			strategy: map[string]string{"rebuild web/ams1/1 d-01": "reboot"},
			noops:    4,
		},
		{
			name: "new image named through a script variable: the kernel line shows it expanded",
			setup: func(in *Input) {
				for _, base := range []string{"https://img.example.com/2026-11-25", "https://img.example.com/2026-11-26"} {
					s := "#!ipxe\ndhcp\nset base-url " + base + "\nset k ${base-url}/sshd-kernel\nkernel ${k} console=ttyS1\nboot\n"
					if strings.HasSuffix(base, "25") {
						findLive(in, "web/ams1/1").Userdata = s
						continue
					}
					d := findDesired(in, "web/ams1/1")
					d.Script = s
					d.Rev = d.ComputeRev()
				}
			},
			want: []string{"rebuild web/ams1/1 d-01"},
			reasons: map[string][]string{"rebuild web/ams1/1 d-01": {
				"script changed",
				"kernel: https://img.example.com/2026-11-25/sshd-kernel -> https://img.example.com/2026-11-26/sshd-kernel",
			}},
			noops: 4,
		},
		{
			name: "a device whose last boot failed is rebuilt though its config is current",
			setup: func(in *Input) {
				l := findLive(in, "web/ewr1/1")
				l.UserState, l.UserStateBody = UserStateFailed, "kernel: 404 Not Found"
				findLive(in, "web/ewr1/2").UserState = "succeeded"
				findLive(in, "web/ams1/2").UserState = "running"
			},
			want:     []string{"rebuild web/ewr1/1 d-03"},
			reasons:  map[string][]string{"rebuild web/ewr1/1 d-03": {"last boot failed: kernel: 404 Not Found"}},
			attrs:    map[string][]string{"rebuild web/ewr1/1 d-03": {`booted: "failed" -> "succeeded"`}},
			strategy: map[string]string{"rebuild web/ewr1/1 d-03": "reboot"},
			noops:    4,
		},
		{
			name: "ipxe_script_url changed",
			setup: func(in *Input) {
				d, _ := urlMode(in, "web/ewr1/2")
				d.IPXEScriptURL = "https://boot.example.com/v2/web/ewr1/2"
				d.Rev = d.ComputeRev()
			},
			want: []string{"rebuild web/ewr1/2 d-04"},
			reasons: map[string][]string{"rebuild web/ewr1/2 d-04": {
				"ipxe_script_url: https://boot.example.com/web/ewr1/2 -> https://boot.example.com/v2/web/ewr1/2",
			}},
			noops: 4,
		},
		{
			name: "script behind an unchanged ipxe_script_url changed: the rev tells",
			setup: func(in *Input) {
				d, l := urlMode(in, "web/ewr1/1")
				old := l.Rev()
				newScript(d)
				if d.Rev == old {
					panic("fixture: rev did not change")
				}
			},
			want:     []string{"rebuild web/ewr1/1 d-03"},
			strategy: map[string]string{"rebuild web/ewr1/1 d-03": "reboot"},
			noops:    4,
		},
		{
			name: "always_pxe only, with ipxe_script_url: update, not rebuild",
			setup: func(in *Input) {
				d, _ := urlMode(in, "web/ewr1/1")
				d.AlwaysPXE = false
				d.Rev = d.ComputeRev()
			},
			want:    []string{"update web/ewr1/1 d-03"},
			reasons: map[string][]string{"update web/ewr1/1 d-03": {"always_pxe: true -> false"}},
			noops:   4,
		},
		{
			name: "always_pxe only, script in userdata: update",
			setup: func(in *Input) {
				d := findDesired(in, "web/ams1/2")
				d.AlwaysPXE = false
				d.Rev = d.ComputeRev()
			},
			want: []string{"update web/ams1/2 d-02"},
			attrs: map[string][]string{"update web/ams1/2 d-02": {
				`always_pxe: "true" -> "false"`,
				`rev: "` + dev(testFleet(), "web", "ams1", 2).Rev + `" -> "` + func() string { d := dev(testFleet(), "web", "ams1", 2); d.AlwaysPXE = false; return d.ComputeRev() }() + `"`,
			}},
			noops: 4,
		},
		{
			name: "hostname and tags: update",
			setup: func(in *Input) {
				l := findLive(in, "web/ams1/1")
				l.Hostname = "old-name"
				l.Tags = append([]string{"zzz", "lab"}, l.Tags[1:]...)
			},
			want: []string{"update web/ams1/1 d-01"},
			reasons: map[string][]string{"update web/ams1/1 d-01": {
				"hostname: old-name -> web-ams1-1", "tags: [lab, zzz] -> [lab]",
			}},
			noops: 4,
		},
		{
			name:  "tag order and lkfleet tags do not count",
			setup: func(in *Input) { slices.Reverse(findLive(in, "web/ams1/1").Tags) },
			noops: 5,
		},
		{
			name:    "stale rev tag, script unchanged: update",
			setup:   func(in *Input) { setTag(findLive(in, "db/ams1/1"), spec.TagRev, "") },
			want:    []string{"update db/ams1/1 d-05"},
			reasons: map[string][]string{"update db/ams1/1 d-05": {"rev tag is stale: (none) -> " + dev(testFleet(), "db", "ams1", 1).Rev + " (boot config unchanged)"}},
			noops:   4,
		},
		{
			name:  "--rebuild all rebuilds every device, creates stay creates",
			setup: func(in *Input) { in.Rebuild = []string{"all"}; dropLive(in, "web/ewr1/2") },
			want: []string{
				"rebuild db/ams1/1 d-05", "rebuild web/ams1/1 d-01", "rebuild web/ams1/2 d-02",
				"rebuild web/ewr1/1 d-03", "create web/ewr1/2 -",
			},
			reasons:  map[string][]string{"rebuild web/ams1/1 d-01": {"rebuild requested (--rebuild all)"}},
			strategy: map[string]string{"rebuild db/ams1/1 d-05": "reboot"},
		},
		{
			name:    "--rebuild GROUP",
			setup:   func(in *Input) { in.Rebuild = []string{"db"} },
			want:    []string{"rebuild db/ams1/1 d-05"},
			reasons: map[string][]string{"rebuild db/ams1/1 d-05": {"rebuild requested (--rebuild db)"}},
			noops:   4,
		},
		{
			name: "--rebuild SLOT, together with an update",
			setup: func(in *Input) {
				in.Rebuild = []string{"web/ewr1/2"}
				findLive(in, "web/ewr1/2").Hostname = "x"
			},
			want:    []string{"rebuild web/ewr1/2 d-04"},
			reasons: map[string][]string{"rebuild web/ewr1/2 d-04": {"hostname: x -> web-ewr1-2", "rebuild requested (--rebuild web/ewr1/2)"}},
			noops:   4,
		},
		{
			name: "--rebuild of a failed device replaces it",
			setup: func(in *Input) {
				in.Rebuild = []string{"db"}
				findLive(in, "db/ams1/1").State = StateFailed
			},
			want:  []string{"replace db/ams1/1 d-05"},
			noops: 4,
		},
		{
			name:    "--replace SLOT",
			setup:   func(in *Input) { in.Replace = []string{"web/ams1/2"} },
			want:    []string{"replace web/ams1/2 d-02"},
			reasons: map[string][]string{"replace web/ams1/2 d-02": {"replacement requested (--replace web/ams1/2)"}},
			attrs:   map[string][]string{"replace web/ams1/2 d-02": {`id: "d-02" -> "(known after apply)"`}},
			noops:   4,
		},
		{
			name: "rebuild strategy: the default follows always_pxe",
			setup: func(in *Input) {
				in.Fleet.Rollout.Rebuild = ""
				d := findDesired(in, "db/ams1/1")
				d.AlwaysPXE = false
				newScript(d)
				newScript(findDesired(in, "web/ams1/1"))
			},
			want: []string{"rebuild db/ams1/1 d-05", "rebuild web/ams1/1 d-01"},
			strategy: map[string]string{
				"rebuild db/ams1/1 d-05":  "reinstall", // default without always_pxe
				"rebuild web/ams1/1 d-01": "reboot",    // default with always_pxe
			},
			noops: 3,
		},
		{
			name: "rebuild strategy: explicit reboot without always_pxe",
			setup: func(in *Input) {
				d := findDesired(in, "db/ams1/1")
				d.AlwaysPXE = false
				newScript(d)
			},
			want: []string{"rebuild db/ams1/1 d-05"},
			reasons: map[string][]string{"rebuild db/ams1/1 d-05": {
				"script changed", "kernel: https://img.example.com/2026-11-25/sshd-kernel -> https://img.example.com/2026-11-26/sshd-kernel",
				"always_pxe: true -> false",
				"reinstall instead of reboot: without always_pxe a reboot does not load the new script",
			}},
			strategy: map[string]string{"rebuild db/ams1/1 d-05": "reinstall"},
			noops:    4,
		},
		{
			name: "rebuild strategy: recreate gets a new id",
			setup: func(in *Input) {
				in.Fleet.Rollout.Rebuild = spec.StrategyRecreate
				newScript(findDesired(in, "db/ams1/1"))
			},
			want:     []string{"rebuild db/ams1/1 d-05"},
			strategy: map[string]string{"rebuild db/ams1/1 d-05": "recreate"},
			noops:    4,
		},
		{
			name: "foreign devices are never touched; a hostname clash warns",
			setup: func(in *Input) {
				in.Foreign = []Live{
					{ID: "f-1", Hostname: "web-ams1-1", State: StateActive, Facility: "ams1"},
					{ID: "f-2", Hostname: "web-ams1-1", State: StateDeprovisioning},
					{ID: "f-3", Hostname: "unrelated", State: StateActive},
				}
				// A device of another fleet that slipped into the listing.
				other := orphan("o-1", "web/ams1/9", "ams1")
				setTag(&other, spec.TagFleet, "prod")
				other.Hostname = "db-ams1-1"
				in.Live = append(in.Live, other)
			},
			warnings: []string{
				`hostname "db-ams1-1" (slot db/ams1/1) is also used by device o-1, which belongs to fleet "prod"; that device is left alone`,
				`hostname "web-ams1-1" (slot web/ams1/1) is also used by device f-1, which is not part of fleet "lab"; that device is left alone`,
			},
			noops: 5,
		},
		{
			name: "unreadable slot tags warn and are left alone",
			setup: func(in *Input) {
				a := orphan("u-1", "web/ams1/01", "ams1")
				b := orphan("u-2", "", "ams1")
				in.Live = append(in.Live, a, b)
			},
			warnings: []string{
				`device u-2 (hostname "orphan-u-2") carries the tag of fleet "lab" but no slot tag; it is left alone`,
				`device u-1 (hostname "orphan-u-1") carries the tag of fleet "lab" but an unreadable slot tag "lkfleet:slot=web/ams1/01"; it is left alone`,
			},
			noops: 5,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput()
			tc.setup(&in)
			p, err := Compute(in)
			if err != nil {
				t.Fatalf("Compute: %v", err)
			}
			var got []string
			byKey := map[string]Change{}
			for _, c := range p.Changes {
				got = append(got, key(c))
				byKey[key(c)] = c
				if len(c.Reasons) == 0 {
					t.Errorf("%s: no reasons", key(c))
				}
				forced := slices.ContainsFunc(c.Reasons, func(r string) bool { return strings.HasPrefix(r, "rebuild requested") })
				if len(c.Attrs) == 0 && !forced {
					t.Errorf("%s: no attributes", key(c))
				}
				if (c.Desired == nil) != (c.Action == Delete) || (c.Live == nil) != (c.Action == Create) {
					t.Errorf("%s: desired %v, live %v", key(c), c.Desired != nil, c.Live != nil)
				}
				if c.Desired != nil && c.Desired.Rev == "" {
					t.Errorf("%s: desired device without rev", key(c))
				}
				for _, a := range c.Attrs {
					if a.Forces && c.Action != Replace {
						t.Errorf("%s: attribute %s forces replacement in a %s", key(c), a.Name, c.Action)
					}
				}
				if c.Action == Replace && !slices.ContainsFunc(c.Attrs, func(a AttrDiff) bool { return a.Forces }) &&
					!slices.ContainsFunc(c.Reasons, func(r string) bool { return strings.HasPrefix(r, "replacement requested") }) {
					t.Errorf("%s: replacement without a forcing attribute", key(c))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("changes:\n got %q\nwant %q", got, tc.want)
			}
			for k, want := range tc.reasons {
				if c, ok := byKey[k]; !ok || !slices.Equal(c.Reasons, want) {
					t.Errorf("%s reasons:\n got %q\nwant %q", k, c.Reasons, want)
				}
			}
			for k, want := range tc.attrs {
				var gotA []string
				for _, a := range byKey[k].Attrs {
					gotA = append(gotA, attrString(a))
				}
				if !slices.Equal(gotA, want) {
					t.Errorf("%s attributes:\n got %q\nwant %q", k, gotA, want)
				}
			}
			for k, want := range tc.strategy {
				if got := string(byKey[k].Strategy); got != want {
					t.Errorf("%s strategy = %q, want %q", k, got, want)
				}
			}
			for _, c := range p.Changes {
				if c.Action != Rebuild && c.Strategy != "" {
					t.Errorf("%s has strategy %q", key(c), c.Strategy)
				}
			}
			if !slices.Equal(p.Warnings, tc.warnings) {
				t.Errorf("warnings:\n got %q\nwant %q", p.Warnings, tc.warnings)
			}
			if p.NoOps != tc.noops {
				t.Errorf("NoOps = %d, want %d", p.NoOps, tc.noops)
			}
			if p.Fleet != "lab" || p.File != "lab.yml" || p.FleetFingerprint != "sha256:fleet" || p.LiveFingerprint != LiveFingerprint(in.Live) {
				t.Errorf("plan header = %q %q %q %q", p.Fleet, p.File, p.FleetFingerprint, p.LiveFingerprint)
			}
		})
	}
}

func TestComputeWaves(t *testing.T) {
	in := baseInput()
	in.Live = append(in.Live, orphan("d-40", "web/sjc1/1", "sjc1"), orphan("d-41", "web/ewr1/3", "ewr1"))
	dropLive(&in, "web/ams1/2")
	p, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range p.Changes {
		got = append(got, fmt.Sprintf("%d %s", c.Wave, key(c)))
	}
	want := []string{"0 create web/ams1/2 -", "1 delete web/ewr1/3 d-41", "1 delete web/sjc1/1 d-40"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestComputeErrors(t *testing.T) {
	cases := []struct {
		name  string
		setup func(in *Input)
		want  string
	}{
		{"no fleet", func(in *Input) { in.Fleet = nil }, "compute plan: no fleet given"},
		{"slot desired twice", func(in *Input) { in.Desired = append(in.Desired, in.Desired[0]) },
			`compute plan for fleet "lab": slot web/ams1/1 is desired twice`},
		{"invalid desired slot", func(in *Input) { in.Desired[0].Slot = "web/ams1" },
			`compute plan for fleet "lab": desired device "web-ams1-1" has an invalid slot "web/ams1"`},
		{"wave outside the rollout", func(in *Input) { in.Desired[2].Wave = 2 },
			`compute plan for fleet "lab": slot web/ewr1/1 is in wave 2, which the rollout does not have`},
		{"unknown rebuild target", func(in *Input) { in.Rebuild = []string{"wbe"} },
			`compute plan for fleet "lab": --rebuild "wbe": no group or desired slot has that name (want "all", a group name or a slot such as group/zone/1)`},
		{"rebuild of an undesired slot", func(in *Input) { in.Rebuild = []string{"web/ams1/3"} },
			`compute plan for fleet "lab": --rebuild "web/ams1/3": no group or desired slot has that name (want "all", a group name or a slot such as group/zone/1)`},
		{"replace of a group", func(in *Input) { in.Replace = []string{"web"} },
			`compute plan for fleet "lab": --replace "web": not a desired slot (want group/zone/index, e.g. web/ams1/1)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput()
			tc.setup(&in)
			_, err := Compute(in)
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestComputeDeterministic shuffles every input slice: the plan must not
// change, down to warnings and the order of duplicates.
func TestComputeDeterministic(t *testing.T) {
	build := func() Input {
		in := baseInput()
		in.Live = append(in.Live,
			orphan("d-40", "web/sjc1/1", "sjc1"), orphan("d-41", "web/ewr1/3", "ewr1"),
			orphan("d-42", "web/ewr1/10", "ewr1"), orphan("d-43", "cache/ams1/1", "ams1"),
			orphan("u-1", "bad", "ams1"), orphan("u-2", "", "ams1"))
		for _, id := range []string{"d-90", "d-91", "d-92"} {
			in.Live = append(in.Live, liveOf(in.Desired[0], id)) // same age: tie on id
		}
		findLive(&in, "db/ams1/1").Machine = "x"
		findLive(&in, "web/ewr1/2").Hostname = "x"
		in.Foreign = []Live{
			{ID: "f-2", Hostname: "web-ams1-1", State: StateActive},
			{ID: "f-1", Hostname: "web-ams1-1", State: StateActive},
			{ID: "f-3", Hostname: "web-ewr1-2", State: StateActive},
		}
		in.Rebuild = []string{"web/ams1/2", "all"}
		return in
	}
	want, err := Compute(build())
	if err != nil {
		t.Fatal(err)
	}
	if len(want.Changes) < 10 || len(want.Warnings) != 5 {
		t.Fatalf("fixture too small: %d changes, %d warnings", len(want.Changes), len(want.Warnings))
	}
	for seed := range uint64(50) {
		in := build()
		r := rand.New(rand.NewPCG(seed, 1))
		r.Shuffle(len(in.Desired), func(i, j int) { in.Desired[i], in.Desired[j] = in.Desired[j], in.Desired[i] })
		r.Shuffle(len(in.Live), func(i, j int) { in.Live[i], in.Live[j] = in.Live[j], in.Live[i] })
		r.Shuffle(len(in.Foreign), func(i, j int) { in.Foreign[i], in.Foreign[j] = in.Foreign[j], in.Foreign[i] })
		r.Shuffle(len(in.Rebuild), func(i, j int) { in.Rebuild[i], in.Rebuild[j] = in.Rebuild[j], in.Rebuild[i] })
		got, err := Compute(in)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: plan differs after shuffling the input", seed)
		}
	}
}

// TestComputeDoesNotModifyInput: the caller's slices stay as they were.
func TestComputeDoesNotModifyInput(t *testing.T) {
	in := baseInput()
	in.Live[0].State = StateFailed
	slices.Reverse(in.Live)
	before := fmt.Sprint(in.Desired, in.Live)
	if _, err := Compute(in); err != nil {
		t.Fatal(err)
	}
	if after := fmt.Sprint(in.Desired, in.Live); after != before {
		t.Error("Compute modified its input")
	}
}

func TestSummary(t *testing.T) {
	p := Plan{NoOps: 3, Changes: []Change{
		{Action: Create}, {Action: Create}, {Action: Replace}, {Action: Rebuild},
		{Action: Update}, {Action: Update}, {Action: Update}, {Action: Delete},
	}}
	want := Summary{Add: 3, Rebuild: 1, Change: 3, Destroy: 2, Unchanged: 3}
	if got := p.Summary(); got != want {
		t.Errorf("Summary = %+v, want %+v", got, want)
	}
	if (Plan{}).HasChanges() || !p.HasChanges() {
		t.Error("HasChanges wrong")
	}
}

func TestLiveFingerprint(t *testing.T) {
	ls := liveAll(desiredOf(testFleet()))
	fp := LiveFingerprint(ls)
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != 7+64 {
		t.Fatalf("fingerprint %q", fp)
	}
	rev := slices.Clone(ls)
	slices.Reverse(rev)
	if LiveFingerprint(rev) != fp {
		t.Error("fingerprint depends on listing order")
	}
	gone := append(slices.Clone(ls), Live{ID: "x", State: StateDeprovisioning, Tags: ownTags("lab", "web/ams1/1", "")})
	if LiveFingerprint(gone) != fp {
		t.Error("a deprovisioning device changed the fingerprint")
	}
	// Each fingerprinted field matters; others (hostname) do not.
	for name, mut := range map[string]func(*Live){
		"id":    func(l *Live) { l.ID = "other" },
		"state": func(l *Live) { l.State = StateProvisioning },
		"rev":   func(l *Live) { setTag(l, spec.TagRev, "abc") },
		"slot":  func(l *Live) { setTag(l, spec.TagSlot, "web/ams1/9") },
	} {
		c := slices.Clone(ls)
		mut(&c[2])
		if LiveFingerprint(c) == fp {
			t.Errorf("changing %s kept the fingerprint", name)
		}
	}
	c := slices.Clone(ls)
	c[0].Hostname = "renamed"
	if LiveFingerprint(c) != fp {
		t.Error("hostname changed the fingerprint")
	}
	if LiveFingerprint(ls[:4]) == fp {
		t.Error("a vanished device kept the fingerprint")
	}
	if FleetFingerprint([]byte("a")) == FleetFingerprint([]byte("b")) || FleetFingerprint(nil) != "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Error("FleetFingerprint is not the sha256 of the bytes")
	}
}
