package ui

import (
	"testing"

	"github.com/lkfleet/lkfleet/pkg/executor"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// TestTrackerDuplicateSlot: a slot with two changes (the device that stays
// is rebuilt, a duplicate is deleted) is followed per change.
func TestTrackerDuplicateSlot(t *testing.T) {
	var tr tracker
	tr.setPlan(planner.Plan{Changes: []planner.Change{
		{Action: planner.Rebuild, Live: &planner.Live{ID: "keep", Tags: []string{spec.TagSlot + "a/z/1"}}, Wave: 0},
		{Action: planner.Delete, Live: &planner.Live{ID: "dup", Tags: []string{spec.TagSlot + "a/z/1"}}, Wave: 0},
	}})
	tr.apply(executor.Event{Time: t0, Kind: executor.ChangeDone, Wave: 0, Action: planner.Delete, Slot: "a/z/1", DeviceID: "dup"})
	tr.apply(executor.Event{Time: t0, Kind: executor.DeviceState, Wave: 0, Slot: "a/z/1", DeviceID: "keep", State: "provisioning"})
	s := tr.wave(0, false).snap.Load()
	if s.done != 1 || s.prov != 1 || s.total != 2 {
		t.Errorf("snapshot %+v, want the delete done and the rebuild provisioning", s)
	}
}

// TestTrackerUnwavedChanges: changes without a wave form a trailing wave
// (as the executor runs them) and their wave -1 events find them by slot.
func TestTrackerUnwavedChanges(t *testing.T) {
	var tr tracker
	tr.setPlan(planner.Plan{Changes: []planner.Change{
		{Action: planner.Create, Desired: &spec.Device{Slot: "a/z/1"}, Wave: 0},
		{Action: planner.Delete, Live: &planner.Live{ID: "old", Tags: []string{spec.TagSlot + "b/q/1"}}, Wave: -1},
	}})
	if len(tr.waves) != 2 || tr.waves[1].index != 1 {
		t.Fatalf("waves %+v, want 0 and a trailing 1", tr.waves)
	}
	w := tr.apply(executor.Event{Time: t0, Kind: executor.ChangeDone, Wave: -1, Action: planner.Delete, Slot: "b/q/1", DeviceID: "old"})
	if w != tr.waves[1] || w.snap.Load().done != 1 {
		t.Errorf("wave -1 delete not matched to the trailing wave")
	}
}

// TestTrackerRetryAndLateStates: a retry un-fails a change, and state
// reports after it is done do not move it back.
func TestTrackerRetryAndLateStates(t *testing.T) {
	var tr tracker
	tr.setPlan(planner.Plan{Changes: []planner.Change{{Action: planner.Create, Desired: &spec.Device{Slot: "a/z/1"}, Wave: 0}}})
	ev := func(k executor.EventKind, state string) *waveSnap {
		w := tr.apply(executor.Event{Time: t0, Kind: k, Wave: 0, Action: planner.Create, Slot: "a/z/1", State: state})
		return w.snap.Load()
	}
	if s := ev(executor.DeviceFailed, ""); s.failed != 1 || s.finished.IsZero() {
		t.Errorf("after failure %+v", s)
	}
	if s := ev(executor.Retrying, ""); s.queued != 1 || !s.finished.IsZero() {
		t.Errorf("after retry %+v", s)
	}
	if s := ev(executor.DeviceReady, "active"); s.done != 1 {
		t.Errorf("after ready %+v", s)
	}
	if s := ev(executor.DeviceState, "provisioning"); s.done != 1 || s.prov != 0 {
		t.Errorf("late state moved a done change back: %+v", s)
	}
}
