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

// MarkerRuns names the runs whose markers the devices carry, each once:
// what the lease record must keep.
func TestMarkerRuns(t *testing.T) {
	live := []Live{
		{ID: "a", Tags: []string{TagPending + PendingValue("r1", "x")}},
		{ID: "b", Tags: []string{TagPending + "legacyrev"}},
		{ID: "c"},
		{ID: "d", Tags: []string{TagPending + PendingValue("r2", "")}},
		{ID: "e", Tags: []string{TagPending + PendingValue("r1", "y")}},
	}
	if got := MarkerRuns(live); !slices.Equal(got, []string{"r1", "r2"}) {
		t.Errorf("MarkerRuns %v, want [r1 r2]", got)
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
