package planner

import (
	"slices"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// markRebuilt gives the live device of slot the tags the one PUT of run's
// in-place rebuild writes: the desired rev tag and the marker naming run
// and the rev the device had.
func markRebuilt(t *testing.T, in *Input, slot, run, from string) *Live {
	t.Helper()
	l := findLive(in, slot)
	l.Tags = append(l.Tags, TagPending+PendingValue(run, from))
	return l
}

// The single-PUT rebuild: a marker is read against the lease's finished
// runs. A run recorded finished settles its markers (no change, the rev
// tag is true); a run never recorded (killed between its PUT and its
// reboot), or one that names the device unconfirmed (its reboot failed),
// leaves the device unfinished and the next plan rebuilds it.
func TestMarkerIsSettledOnlyByItsFinishedRun(t *testing.T) {
	const slot = "web/ams1/2"
	for _, tc := range []struct {
		name    string
		runs    func(*Runs, string)
		rebuild bool
	}{
		{"killed: no record", func(*Runs, string) {}, true},
		{"another run finished", func(r *Runs, _ string) { r.Finish("other", nil) }, true},
		{"finished", func(r *Runs, _ string) { r.Finish("run1", nil) }, false},
		{"finished, another device unconfirmed", func(r *Runs, _ string) { r.Finish("run1", []string{"x"}) }, false},
		{"finished, this device unconfirmed", func(r *Runs, id string) { r.Finish("run1", []string{id}) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := baseInput()
			l := markRebuilt(t, &in, slot, "run1", "0123456789ab")
			tc.runs(&in.Runs, l.ID)
			p, err := Compute(in)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.rebuild {
				if len(p.Changes) != 0 {
					t.Fatalf("changes %v, want none: run1 finished with the device's reboot sent", p.Changes)
				}
				if l.BootedRev(in.Runs) != l.Rev() {
					t.Errorf("booted rev %q, want the rev tag %q", l.BootedRev(in.Runs), l.Rev())
				}
				return
			}
			if len(p.Changes) != 1 || p.Changes[0].Action != Rebuild || p.Changes[0].Slot() != slot {
				t.Fatalf("changes %v, want a rebuild of %s", p.Changes, slot)
			}
			want := "rebuild to rev " + l.Rev() + " was interrupted before its reboot or reinstall was accepted"
			if !slices.Contains(p.Changes[0].Reasons, want) {
				t.Errorf("reasons %q, want %q", p.Changes[0].Reasons, want)
			}
			if got := l.BootedRev(in.Runs); got != "0123456789ab" {
				t.Errorf("booted rev %q, want the rev before the PUT", got)
			}
		})
	}
}

// The marker of the two-PUT form (no record) is unfinished whatever runs
// the record lists.
func TestMarkerWithoutRunIsNeverSettled(t *testing.T) {
	in := baseInput()
	d := findDesired(&in, "web/ams1/2")
	l := findLive(&in, "web/ams1/2")
	l.Tags = append(l.Tags, TagPending+d.Rev)
	in.Runs.Finish("", nil)
	in.Runs.Finish("run1", nil)
	if !l.Unfinished(in.Runs) {
		t.Fatal("a marker without a run reads as settled")
	}
	p, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Action != Rebuild {
		t.Fatalf("changes %v, want one rebuild", p.Changes)
	}
}

// SettledRuns names the runs whose settled markers the devices carry,
// each once: what the lease record must keep.
func TestSettledRuns(t *testing.T) {
	live := []Live{
		{ID: "a", Tags: []string{TagPending + PendingValue("r1", "x")}},
		{ID: "b", Tags: []string{TagPending + "legacyrev"}},
		{ID: "c"},
		{ID: "d", Tags: []string{TagPending + PendingValue("r2", "")}},
		{ID: "e", Tags: []string{TagPending + PendingValue("r1", "y")}},
		{ID: "f", Tags: []string{TagPending + PendingValue("r3", "y")}},
		{ID: "g", Tags: []string{TagPending + PendingValue("killed", "y")}},
	}
	var runs Runs
	runs.Finish("r1", nil)
	runs.Finish("r2", nil)
	runs.Finish("r3", []string{"f"})
	if got := SettledRuns(live, runs); !slices.Equal(got, []string{"r1", "r2"}) {
		t.Errorf("SettledRuns %v, want [r1 r2]", got)
	}
}

// A rebuild's PUT of a device whose rev tag already is the new rev (an
// unfinished rebuild done again) changes only the marker: the fingerprint
// must see it, or a saved plan would apply over another run's rebuild.
func TestFingerprintSeesTheMarker(t *testing.T) {
	base := []Live{{ID: "a", State: "active", Tags: []string{spec.TagSlot + "web/ams1/1", spec.TagRev + "r"}}}
	marked := []Live{{ID: "a", State: "active", Tags: append(slices.Clone(base[0].Tags), TagPending+PendingValue("r1", "q"))}}
	again := []Live{{ID: "a", State: "active", Tags: append(slices.Clone(base[0].Tags), TagPending+PendingValue("r2", "q"))}}
	fb, fm, fa := LiveFingerprint(base), LiveFingerprint(marked), LiveFingerprint(again)
	if fb == fm || fm == fa || !strings.HasPrefix(fb, "sha256:") {
		t.Errorf("fingerprints %s %s %s, want three different ones", fb, fm, fa)
	}
}

// The lease record keeps the newest Runs.Max finished runs. A plan with an
// in-place rebuild makes a run that records itself and drops the oldest
// runs beyond the bound; before that the devices still carrying their
// settled markers get the update PUT that clears them, so no marker is
// read as unfinished once its run left the record. Without an in-place
// rebuild (no run recorded) or within the bound, nothing is cleared.
func TestMarkersOfRunsLeavingTheRecordAreCleared(t *testing.T) {
	setup := func(max int, rebuild bool) (Plan, *Input) {
		in := baseInput()
		markRebuilt(t, &in, "web/ams1/1", "r1", "0123456789ab")
		markRebuilt(t, &in, "web/ams1/2", "r2", "0123456789ab")
		markRebuilt(t, &in, "web/ewr1/1", "r3", "0123456789ab")
		for _, r := range []string{"r1", "r2", "r3"} {
			in.Runs.Finish(r, nil)
		}
		in.Runs.Max = max
		if rebuild {
			findLive(&in, "db/ams1/1").Userdata = "#!ipxe\necho old image\n"
		}
		p, err := Compute(in)
		if err != nil {
			t.Fatal(err)
		}
		return p, &in
	}
	updates := func(p Plan) []string {
		var out []string
		for _, c := range p.Changes {
			if c.Action == Update {
				out = append(out, c.Slot())
			}
		}
		return out
	}
	p, _ := setup(3, true)
	if got := updates(p); !slices.Equal(got, []string{"web/ams1/1"}) {
		t.Fatalf("updates %v, want the device of the oldest run r1 (changes %v)", got, p.Changes)
	}
	for _, c := range p.Changes {
		if c.Action == Update && (!strings.Contains(c.Reasons[0], "clear the settled marker of rebuild run r1") || c.Desired == nil) {
			t.Errorf("cleanup change %+v", c)
		}
	}
	if p.NoOps != 3 {
		t.Errorf("no-ops %d, want 3 (of 5 slots, the cleared and the rebuilt devices have changes)", p.NoOps)
	}
	if p, _ := setup(4, true); len(updates(p)) != 0 {
		t.Errorf("within the bound: updates %v, want none", updates(p))
	}
	if p, _ := setup(3, false); len(p.Changes) != 0 {
		t.Errorf("no rebuild (no run recorded): changes %v, want none", p.Changes)
	}
}
