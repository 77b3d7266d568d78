package executor

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// mutations counts the update and action calls sent for device id.
func (f *fakeCloud) mutations(id string) (updates, actions int) {
	for _, c := range f.log() {
		switch {
		case c.id == id && c.op == "update":
			updates++
		case c.id == id && c.op == "action":
			actions++
		}
	}
	return updates, actions
}

// With a run id (the lease records finished runs) an in-place rebuild is
// one PUT and its reboot (or reinstall): the PUT already writes the new rev tag, and the
// marker naming the run and the old rev stays. A kill between the two
// leaves a marker no finished run settles: the device reads as unfinished
// and on the old rev. Once the run is recorded finished without the
// device among the unconfirmed, the marker reads as done.
func TestRebuildWithRunIDIsOnePutAndTheReboot(t *testing.T) {
	for _, how := range []string{"reboot", "reinstall"} {
		t.Run(how, func(t *testing.T) { onePutAndTheAction(t, how) })
	}
}

func onePutAndTheAction(t *testing.T, how string) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "oldrev000000")
		fc.actionGate = make(chan struct{})
		type outcome struct {
			res Result
			err error
		}
		done := make(chan outcome, 1)
		go func() {
			res, err := Apply(t.Context(), fc, mkPlan(rollout(), liveChange(planner.Rebuild, old, how)),
				Options{QuietSince: quiet(), RunID: "run1"})
			done <- outcome{res, err}
		}()
		time.Sleep(time.Second)
		synctest.Wait() // the PUT is done, the reboot held: a kill now leaves this
		l := fc.liveAt(fc.dev(old.ID), time.Now())
		if l.Pending() != planner.PendingValue("run1", "oldrev000000") || l.Rev() != "newrev000000" {
			t.Errorf("after the PUT: pending %q, rev %q; want run1/oldrev000000 and the new rev", l.Pending(), l.Rev())
		}
		var none planner.Runs // killed now: no record of run1
		if !l.Unfinished(none) || l.BootedRev(none) != "oldrev000000" {
			t.Errorf("killed after the PUT: unfinished %v, booted rev %q; want unfinished on the old rev", l.Unfinished(none), l.BootedRev(none))
		}
		close(fc.actionGate)
		o := <-done
		if o.err != nil {
			t.Fatal(o.err)
		}
		if len(o.res.Unconfirmed) != 0 {
			t.Errorf("unconfirmed %v, want none", o.res.Unconfirmed)
		}
		if u, a := fc.mutations(old.ID); u != 1 || a != 1 {
			t.Errorf("%d updates and %d actions, want 1 and 1", u, a)
		}
		l = fc.liveAt(fc.dev(old.ID), time.Now())
		var runs planner.Runs
		runs.Finish("run1", o.res.Unconfirmed)
		if l.Unfinished(runs) || l.BootedRev(runs) != "newrev000000" {
			t.Errorf("run1 finished: unfinished %v, booted rev %q; want done on the new rev", l.Unfinished(runs), l.BootedRev(runs))
		}
	})
}

// A refused reboot under a run id: the device is named unconfirmed, so
// the run's own record leaves its marker unfinished (what
// TestRefusedRebootKeepsPending asks of the two-PUT form).
func TestRefusedRebootWithRunIDIsUnconfirmed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "oldrev000000")
		ok := fc.seed(slotName("ams1", 2), "oldrev000000")
		fc.actionErr = errors.New("422 device is locked")
		plan := mkPlan(rollout(), liveChange(planner.Rebuild, old, "reboot"))
		res, err := Apply(t.Context(), fc, plan, Options{QuietSince: quiet(), RunID: "run1"})
		if err == nil || len(res.Failed) != 1 {
			t.Fatalf("err %v, failed %v", err, res.Failed)
		}
		if !slices.Equal(res.Unconfirmed, []string{old.ID}) {
			t.Fatalf("unconfirmed %v, want [%s]", res.Unconfirmed, old.ID)
		}
		var runs planner.Runs
		runs.Finish("run1", res.Unconfirmed)
		l := fc.liveAt(fc.dev(old.ID), time.Now())
		if !l.Unfinished(runs) || l.BootedRev(runs) != "oldrev000000" {
			t.Errorf("refused reboot: unfinished %v, booted rev %q; want unfinished on the old rev", l.Unfinished(runs), l.BootedRev(runs))
		}
		if u, _ := fc.mutations(old.ID); u != 1 {
			t.Errorf("%d updates, want the one PUT", u)
		}
		if u, a := fc.mutations(ok.ID); u+a != 0 {
			t.Errorf("untouched device got %d updates and %d actions", u, a)
		}
	})
}

// A second rebuild of a device whose first one is unfinished keeps, in
// its marker, the rev the device may still run: the first rebuild's old
// rev, not the rev tag its PUT wrote.
func TestRebuildOfUnfinishedKeepsTheOldRev(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		l := fc.seed(slotName("ams1", 1), "midrev000000")
		d := fc.dev(l.ID)
		d.tags = append(d.tags, planner.TagPending+planner.PendingValue("killed", "oldrev000000"))
		l = fc.liveAt(d, time.Now())
		var runs planner.Runs
		runs.Finish("other", nil)
		if _, err := Apply(t.Context(), fc, mkPlan(rollout(), liveChange(planner.Rebuild, l, "reboot")),
			Options{QuietSince: quiet(), RunID: "run2", Runs: runs}); err != nil {
			t.Fatal(err)
		}
		got := fc.liveAt(d, time.Now())
		if want := planner.PendingValue("run2", "oldrev000000"); got.Pending() != want || !slices.Contains(got.Tags, spec.TagRev+"newrev000000") {
			t.Errorf("tags %v, want pending %s and the new rev", got.Tags, want)
		}
	})
}

// Ctrl-C during a rebuild under a run id: the PUT in flight finishes and
// its reboot is still sent (the device is confirmed, its marker settles
// with the run's record); the device whose turn had not come is neither
// PUT nor named unconfirmed, and keeps no marker of the run.
func TestCtrlCDuringRebuildWithRunID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.callDelay = time.Second
		a := fc.seed(slotName("ams1", 1), "oldrev000000")
		b := fc.seed(slotName("ams1", 2), "oldrev000000")
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(500*time.Millisecond, cancel) // the first PUT is in flight
		res, err := Apply(ctx, fc, mkPlan(rollout(), liveChange(planner.Rebuild, a, "reboot"), liveChange(planner.Rebuild, b, "reboot")),
			Options{QuietSince: quiet(), RunID: "run1"})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want Ctrl-C", err)
		}
		if len(res.Unconfirmed) != 0 {
			t.Errorf("unconfirmed %v, want none", res.Unconfirmed)
		}
		var runs planner.Runs
		runs.Finish("run1", res.Unconfirmed)
		var first, second string
		for _, l := range []planner.Live{fc.liveAt(fc.dev(a.ID), time.Now()), fc.liveAt(fc.dev(b.ID), time.Now())} {
			u, acts := fc.mutations(l.ID)
			switch {
			case u == 1 && acts == 1 && l.Pending() == planner.PendingValue("run1", "oldrev000000") && !l.Unfinished(runs):
				first = l.ID
			case u == 0 && acts == 0 && l.Pending() == "" && l.Rev() == "oldrev000000":
				second = l.ID
			default:
				t.Errorf("device %s: %d updates, %d actions, tags %v", l.ID, u, acts, l.Tags)
			}
		}
		if first == "" || second == "" {
			t.Errorf("want one device rebuilt and settled, one untouched; got %q and %q", first, second)
		}
	})
}
