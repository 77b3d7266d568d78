package executor

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// TestWaveDoneOnlyForAWholeWave: a wave the timeout cut (its device was
// created, but its wait was interrupted while the device provisions) gets
// no WaveDone, since the progress view settles a wave's devices on it,
// and neither does the wave after it, never started.
func TestWaveDoneOnlyForAWholeWave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake() // provisions for 30 s
		var ev events
		plan := mkPlan(rollout(), createChange(slotName("ams1", 1)), createChange(slotName("ewr1", 1)))
		res, err := Apply(t.Context(), fc, plan, Options{OnEvent: ev.add, QuietSince: quiet(), Timeout: 10 * time.Second})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the deadline", err)
		}
		if res.Created != 1 || len(res.NotDone) != 1 {
			t.Errorf("Created %d, NotDone %d; want the wave 1 create counted and the wave 2 one not done", res.Created, len(res.NotDone))
		}
		if got := ev.kinds(""); slices.Contains(got, WaveDone) || slices.Contains(got, DeviceReady) {
			t.Errorf("events %v: a wave cut by the timeout is reported done", got)
		}
	})
}

// TestWaveDoneWhenTheDeadlineComesAfterItsLastChange: the deadline passes
// while the wave's last change (a delete, whose call Ctrl-C and the
// timeout do not cancel) is in flight; that change still completes, so
// nothing of the wave was stopped and it is done, as the CLI's summary
// ("complete") says too.
func TestWaveDoneWhenTheDeadlineComesAfterItsLastChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.callDelay = 5 * time.Second
		old := fc.seed(slotName("ams1", 2), "oldrev000000")
		var ev events
		plan := mkPlan(rollout(), createChange(slotName("ams1", 1)), deleteChange(old))
		// Create 0-5 s, ready at 35 s and seen within a poll, the delete
		// sent after it and in flight for 5 s: the deadline falls inside.
		deadline := time.Now().Add(38 * time.Second)
		res, err := Apply(t.Context(), fc, plan, Options{OnEvent: ev.add, QuietSince: quiet(), Timeout: 38 * time.Second})
		if res.Created != 1 || res.Deleted != 1 || len(res.NotDone) != 0 || len(res.Failed) != 0 {
			t.Fatalf("result %+v, err %v; want the create and the delete done", res, err)
		}
		straddles := false
		for _, c := range fc.log() {
			if c.op == "delete" {
				straddles = c.at.Before(deadline) && c.finished.After(deadline)
			}
		}
		if !straddles {
			t.Fatalf("the delete did not straddle the deadline: %v", fc.log())
		}
		if got := ev.kinds(""); !slices.Contains(got, WaveDone) {
			t.Errorf("events %v: a wave whose every change was done has no WaveDone", got)
		}
	})
}
