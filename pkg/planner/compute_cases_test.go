package planner

import (
	"slices"
	"strings"
	"time"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// computeCases is TestCompute's table: one fleet (baseInput) and, per case,
// what is done to its input and the plan that must come out.
func computeCases() []computeCase {
	newScript := func(d *spec.Device) {
		d.Image.BaseURL = "https://img.example.com/2026-11-26"
		d.Script = script(d.Image, d.Slot)
		d.Rev = d.ComputeRev()
	}
	return []computeCase{
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
			name: "duplicates: of three active devices the oldest is kept, both newer ones deleted",
			setup: func(in *Input) {
				d := findDesired(in, "web/ewr1/2")
				for i, id := range []string{"d-97", "d-98"} {
					l := liveOf(*d, id)
					l.CreatedAt = t0.Add(time.Duration(i+1) * time.Hour)
					in.Live = append(in.Live, l)
				}
			},
			want: []string{"delete web/ewr1/2 d-97", "delete web/ewr1/2 d-98"},
			reasons: map[string][]string{
				"delete web/ewr1/2 d-97": {"duplicate in slot web/ewr1/2: keeping active device d-04"},
				"delete web/ewr1/2 d-98": {"duplicate in slot web/ewr1/2: keeping active device d-04"},
			},
			noops: 5,
		},
		{
			name: "duplicates: same age keeps the smallest id; an older failed device is not kept",
			setup: func(in *Input) {
				d := findDesired(in, "db/ams1/1")
				dropLive(in, "db/ams1/1")
				a, b, c := liveOf(*d, "d-b"), liveOf(*d, "d-a"), liveOf(*d, "d-0")
				a.State, b.State, c.State = StateQueued, StateQueued, StateFailed
				c.CreatedAt = t0.Add(-time.Hour)
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
				dup.CreatedAt = t0.Add(time.Hour)
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
}
