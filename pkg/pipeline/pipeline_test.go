package pipeline

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// fakeBackend is an in-memory Backend: planning needs no socket.
type fakeBackend struct {
	live, all []planner.Live
	cat       planner.Catalogue
	capWarn   []string
	listErr   error
	calls     []string
	needs     map[planner.Need]int
	vnets     []planner.VirtualNetwork
}

func (f *fakeBackend) List(context.Context) ([]planner.Live, error) {
	f.calls = append(f.calls, "list")
	return f.live, f.listErr
}

func (f *fakeBackend) ListAll(context.Context) ([]planner.Live, error) {
	f.calls = append(f.calls, "list-all")
	return f.all, nil
}

func (f *fakeBackend) Catalogue(context.Context) (planner.Catalogue, error) {
	f.calls = append(f.calls, "catalogue")
	return f.cat, nil
}

func (f *fakeBackend) CheckCapacity(_ context.Context, needs map[planner.Need]int) ([]string, error) {
	f.calls = append(f.calls, "capacity")
	f.needs = maps.Clone(needs)
	return f.capWarn, nil
}

func (f *fakeBackend) VirtualNetworks(context.Context) ([]planner.VirtualNetwork, error) {
	f.calls = append(f.calls, "vlans")
	return f.vnets, nil
}

// The cmdline is given, so rendering fetches nothing; preflight is skipped.
const testFleet = `apiVersion: lkfleet/v1
fleet: lab
project: 3f0c8a1e-6d2b-4c59-9a8e-1b2c3d4e5f60
images:
  sshd:
    base_url: http://img.invalid/v1
    cmdline: console=ttyS1
groups:
  - name: web
    image: sshd
    count: 2
    zones: [ams1]
`

func load(t *testing.T) *spec.Fleet {
	t.Helper()
	f, err := spec.Load("lab.yml", []byte(testFleet), spec.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPlanCreatesWithClashCheckAndCapacity(t *testing.T) {
	f := load(t)
	b := &fakeBackend{
		all:     []planner.Live{{ID: "x", Hostname: "web-ams1-1", State: "active"}},
		capWarn: []string{"no capacity for 2 × baremetal_0 in ams1"},
	}
	var notes []string
	p, err := Plan(t.Context(), b, Request{Fleet: f, FleetBytes: []byte(testFleet), SkipPreflight: true,
		Note: func(s string) { notes = append(notes, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Summary(); got.Add != 2 {
		t.Errorf("summary %+v, want 2 to add", got)
	}
	if want := []string{"catalogue", "list", "list-all", "capacity"}; !slices.Equal(b.calls, want) {
		t.Errorf("calls %q, want %q", b.calls, want)
	}
	if want := map[planner.Need]int{{Zone: "ams1", Machine: "baremetal_0"}: 2}; !maps.Equal(b.needs, want) {
		t.Errorf("capacity needs %v, want %v", b.needs, want)
	}
	if !slices.Contains(p.Warnings, b.capWarn[0]) || !slices.ContainsFunc(p.Warnings, func(w string) bool {
		return strings.Contains(w, `hostname "web-ams1-1" (slot web/ams1/1) is also used by device x`)
	}) {
		t.Errorf("warnings %q lack the capacity or the clash warning", p.Warnings)
	}
	if want := "Preflight skipped (--skip-preflight): 2 kernel and initrd URLs and 0 script URLs were not checked."; !slices.Equal(notes, []string{want}) {
		t.Errorf("notes %q, want %q", notes, want)
	}
	if p.FleetFingerprint != planner.FleetFingerprint([]byte(testFleet)) {
		t.Error("fleet fingerprint not recorded")
	}
}

func TestPlanWithNothingToCreateListsOnlyTheFleet(t *testing.T) {
	f := load(t)
	desired, err := Desired(t.Context(), HTTPClient(), nil, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBackend{}
	for i, d := range desired {
		b.live = append(b.live, planner.Live{ID: string(rune('a' + i)), Hostname: d.Hostname, State: "active",
			Tags: d.Tags(), Machine: d.Machine, Facility: d.Zone,
			Billing: d.Billing, AlwaysPXE: d.AlwaysPXE, Userdata: d.APIUserdata()})
	}
	p, err := Plan(t.Context(), b, Request{Fleet: f, SkipPreflight: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.HasChanges() || p.NoOps != 2 {
		t.Errorf("plan has changes %+v (no-ops %d)", p.Changes, p.NoOps)
	}
	if want := []string{"catalogue", "list"}; !slices.Equal(b.calls, want) {
		t.Errorf("calls %q, want %q", b.calls, want)
	}
}

func TestCheckSavedRefusesStalePlans(t *testing.T) {
	f := load(t)
	live := []planner.Live{{ID: "a", State: "active", Tags: spec.Device{Fleet: "lab", Slot: "web/ams1/1", Rev: "r"}.Tags()}}
	plan := planner.Plan{Fleet: "lab", FleetFingerprint: planner.FleetFingerprint([]byte("v1")), LiveFingerprint: planner.LiveFingerprint(live)}
	for _, tc := range []struct {
		name  string
		plan  planner.Plan
		bytes string
		live  []planner.Live
		want  string
	}{
		{"fresh", plan, "v1", live, ""},
		{"other fleet", planner.Plan{Fleet: "db"}, "v1", live, `plan p.json is for fleet "db", not "lab"`},
		{"fleet file changed", plan, "v2", live, "plan p.json is stale: lab.yml changed since it was saved; run 'lkfleet plan' again"},
		{"devices changed", plan, "v1", nil, "plan p.json is stale: the fleet's devices changed since it was saved; run 'lkfleet plan' again"},
	} {
		err := CheckSaved(t.Context(), &fakeBackend{live: tc.live}, Saved{tc.plan, "p.json"}, f, []byte(tc.bytes), nil)
		if got := errString(err); got != tc.want {
			t.Errorf("%s: err %q, want %q", tc.name, got, tc.want)
		}
	}
	boom := errors.New("list devices: 500")
	if err := CheckSaved(t.Context(), &fakeBackend{listErr: boom}, Saved{plan, "p.json"}, f, []byte("v1"), nil); !errors.Is(err, boom) {
		t.Errorf("listing error %v not returned", err)
	}
}

// TestCheckTargetsRefusesEditedTargets: a plan whose checksum was
// recomputed after an edit still only acts on the fleet's listed devices,
// in their own slots, for its own fleet and project.
func TestCheckTargetsRefusesEditedTargets(t *testing.T) {
	f := load(t)
	ours := planner.Live{ID: "a", State: "active", Tags: spec.Device{Fleet: "lab", Slot: "web/ams1/1", Rev: "r"}.Tags()}
	foreign := ours
	foreign.ID = "x" // another owner's device id pasted in
	moved := planner.Live{ID: "a", State: "active", Tags: spec.Device{Fleet: "lab", Slot: "web/ams1/7", Rev: "r"}.Tags()}
	live := []planner.Live{ours}
	for _, tc := range []struct {
		name string
		plan planner.Plan
		want string
	}{
		{"delete of our device", planner.Plan{Changes: []planner.Change{{Action: planner.Delete, Live: &ours}}}, ""},
		{"create for the fleet", planner.Plan{Changes: []planner.Change{{Action: planner.Create, Desired: &spec.Device{Fleet: "lab", Slot: "web/ams1/2"}}}}, ""},
		{"delete of a foreign device", planner.Plan{Changes: []planner.Change{{Action: planner.Delete, Live: &foreign}}},
			`the plan would delete device x (slot web/ams1/1), which is not one of fleet "lab"'s devices: refusing it`},
		{"device under another slot", planner.Plan{Changes: []planner.Change{{Action: planner.Delete, Live: &moved}}},
			"the plan would delete device a as slot web/ams1/7, but that device is slot web/ams1/1: refusing it"},
		{"update without a device", planner.Plan{Changes: []planner.Change{{Action: planner.Update, Desired: &spec.Device{Fleet: "lab", Slot: "web/ams1/1"}}}},
			"the plan would update slot web/ams1/1 without naming its device: refusing it"},
		{"create for another fleet", planner.Plan{Changes: []planner.Change{{Action: planner.Create, Desired: &spec.Device{Fleet: "db", Slot: "web/ams1/2"}}}},
			`the plan's slot web/ams1/2 holds a device for fleet "db": refusing it`},
		{"another project", planner.Plan{Project: "11111111-2222-3333-4444-555555555555"},
			"the plan is for project 11111111-2222-3333-4444-555555555555, not " + f.Project + ": refusing it"},
	} {
		if got := errString(CheckTargets(tc.plan, f, live)); got != tc.want {
			t.Errorf("%s: err %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCapacityNeedsCountsNewDevicesOnly(t *testing.T) {
	d := &spec.Device{Zone: "ams1", Machine: "m"}
	p := planner.Plan{Changes: []planner.Change{
		{Action: planner.Create, Desired: d},
		{Action: planner.Replace, Desired: d},
		{Action: planner.Rebuild, Desired: d, Strategy: spec.StrategyRecreate},
		{Action: planner.Rebuild, Desired: d, Strategy: spec.StrategyReboot},
		{Action: planner.Update, Desired: d},
		{Action: planner.Delete},
	}}
	if got, want := CapacityNeeds(p), map[planner.Need]int{{Zone: "ams1", Machine: "m"}: 3}; !maps.Equal(got, want) {
		t.Errorf("CapacityNeeds = %v, want %v", got, want)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A group with a network type has the project's VLANs listed once, before
// the diff; the fleets above, without one, never ask (their exact calls).
func TestPlanListsVLANsOnlyForNetworkTypes(t *testing.T) {
	src := strings.Replace(testFleet, "    zones: [ams1]\n", "    zones: [ams1]\n    machine: c3.small.x86\n    network_type: hybrid\n    vlans: [1001]\n", 1)
	f, err := spec.Load("lab.yml", []byte(src), spec.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := &fakeBackend{vnets: []planner.VirtualNetwork{{ID: "v1", VXLAN: 1001, Metro: "am"}}}
	p, err := Plan(t.Context(), b, Request{Fleet: f, FleetBytes: []byte(src), SkipPreflight: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"catalogue", "list", "list-all", "vlans", "capacity"}; !slices.Equal(b.calls, want) {
		t.Errorf("calls %q, want %q", b.calls, want)
	}
	if len(p.Changes) == 0 || !slices.ContainsFunc(p.Changes[0].Attrs, func(a planner.AttrDiff) bool {
		return a.Name == "network_type" && a.After == "hybrid"
	}) {
		t.Errorf("create lacks network_type: %+v", p.Changes)
	}
}

// TestBeforeLiveRunsBetweenTheChecksAndTheListing: the hook apply takes
// its lease in runs after the catalogue (and render) and before the first
// listing; its error ends the plan before any listing; a fleet the
// catalogue refuses never reaches it.
func TestBeforeLiveRunsBetweenTheChecksAndTheListing(t *testing.T) {
	f := load(t)
	b := &fakeBackend{}
	hook := func(context.Context) error { b.calls = append(b.calls, "before-live"); return nil }
	if _, err := Plan(t.Context(), b, Request{Fleet: f, SkipPreflight: true, BeforeLive: hook}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"catalogue", "before-live", "list", "list-all", "capacity"}; !slices.Equal(b.calls, want) {
		t.Errorf("calls %q, want %q", b.calls, want)
	}

	held := errors.New("fleet is locked")
	b = &fakeBackend{}
	_, err := Plan(t.Context(), b, Request{Fleet: f, SkipPreflight: true, BeforeLive: func(context.Context) error {
		b.calls = append(b.calls, "before-live")
		return held
	}})
	if !errors.Is(err, held) || !slices.Equal(b.calls, []string{"catalogue", "before-live"}) {
		t.Errorf("hook failing: %v after calls %q, want its error after the catalogue alone", err, b.calls)
	}

	bad := strings.Replace(testFleet, "zones: [ams1]", "zones: [nowhere1]", 1)
	g, err := spec.Load("lab.yml", []byte(bad), spec.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b = &fakeBackend{cat: planner.Catalogue{Facilities: map[string]string{"ams1": "am"}}}
	called := false
	if _, err := Plan(t.Context(), b, Request{Fleet: g, SkipPreflight: true, BeforeLive: func(context.Context) error { called = true; return nil }}); err == nil || called || !strings.Contains(err.Error(), "nowhere1") {
		t.Errorf("a zone the catalogue lacks: err %v, hook called %v; want an error before the hook", err, called)
	}
}
