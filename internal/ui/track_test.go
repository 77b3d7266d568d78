package ui

import (
	"fmt"
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

// TestTrackerCountsMatchItems drives a two-wave plan of creates, a slot
// with a duplicate, and events found only by device id, and checks that
// the incrementally kept counts equal a recount of the items.
func TestTrackerCountsMatchItems(t *testing.T) {
	var tr tracker
	var changes []planner.Change
	for i := range 50 {
		changes = append(changes, planner.Change{Action: planner.Create, Desired: &spec.Device{Slot: fmt.Sprintf("g/z/%d", i)}, Wave: i % 2})
	}
	changes = append(changes, planner.Change{Action: planner.Delete, Live: &planner.Live{ID: "dup", Tags: []string{spec.TagSlot + "g/z/3"}}, Wave: 1})
	tr.setPlan(planner.Plan{Changes: changes})
	for i := range 50 {
		slot := fmt.Sprintf("g/z/%d", i)
		id := fmt.Sprintf("dev-%d", i)
		tr.apply(executor.Event{Time: t0, Kind: executor.ChangeStarted, Wave: i % 2, Action: planner.Create, Slot: slot})
		tr.apply(executor.Event{Time: t0, Kind: executor.ChangeDone, Wave: i % 2, Action: planner.Create, Slot: slot, DeviceID: id})
		if i%3 == 0 {
			// Found by device id alone.
			tr.apply(executor.Event{Time: t0, Kind: executor.DeviceState, Wave: -1, DeviceID: id, State: "provisioning"})
		}
		if i%5 == 0 {
			tr.apply(executor.Event{Time: t0, Kind: executor.DeviceReady, Wave: i % 2, Slot: slot, DeviceID: id})
		}
	}
	tr.apply(executor.Event{Time: t0, Kind: executor.ChangeDone, Wave: 1, Action: planner.Delete, Slot: "g/z/3", DeviceID: "dup"})
	for _, w := range tr.waves {
		var want [stFailed + 1]int
		for _, it := range w.items {
			want[it.st]++
		}
		if w.count != want {
			t.Errorf("wave %d counts %v, recount %v", w.index, w.count, want)
		}
	}
	// 10 ready (every fifth), 17 provisioning (every third, not ready),
	// the delete done, the rest queued at the API.
	w0, w1 := tr.waves[0].snap.Load(), tr.waves[1].snap.Load()
	if got := w0.done + w1.done; got != 11 {
		t.Errorf("done %d, want 10 ready and 1 deleted", got)
	}
	if got := w0.prov + w1.prov; got != 13 {
		t.Errorf("provisioning %d, want 13", got)
	}
	if tr.waves[1].items[25].slot != "g/z/3" || tr.waves[1].items[25].st != stDone {
		t.Errorf("the duplicate's delete was not matched to its own change")
	}
}

// BenchmarkTrackerEvents is the cost of one event in a 10,000-change
// wave: constant, not a scan of the wave.
func BenchmarkTrackerEvents(b *testing.B) {
	var tr tracker
	const n = 10000
	changes := make([]planner.Change, n)
	ids := make([]string, n)
	for i := range changes {
		changes[i] = planner.Change{Action: planner.Create, Desired: &spec.Device{Slot: fmt.Sprintf("g/z/%d", i)}}
		ids[i] = fmt.Sprintf("dev-%d", i)
	}
	tr.setPlan(planner.Plan{Changes: changes})
	b.ResetTimer()
	for i := range b.N {
		tr.apply(executor.Event{Time: t0, Kind: executor.DeviceState, Wave: 0, Slot: changes[i%n].Slot(), DeviceID: ids[i%n], State: "provisioning"})
	}
}
