package planner

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

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
	for _, tc := range computeCases() {
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
