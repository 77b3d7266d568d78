package executor

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// A replacement that takes its old device's reservation deletes the old
// device, waits until it is gone (deprovisioning included), and only then
// creates, pinned to that reservation.
func TestReservedReplaceWaitsForTheOldDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		slot := slotName("ams1", 1)
		old := fc.seed(slot, "oldrev000000")
		c := liveChange(planner.Replace, old, "")
		c.Desired.Hardware.Reservation = spec.Reservation{NextAvailable: true}
		c.Reservation, c.ReservationAfter = "r-1", old.ID
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), c), Options{})
		if err != nil || res.Replaced != 1 {
			t.Fatalf("apply: %v, %+v", err, res)
		}
		if got := fc.ops(slot); !slices.Equal(got, []string{"delete", "create"}) {
			t.Fatalf("calls = %v, want delete then create", got)
		}
		log := fc.log()
		gone := fc.dev(old.ID).deleted.Add(fc.deprovision)
		if log[1].at.Before(gone) {
			t.Errorf("created at %v, before the old device was gone at %v", log[1].at, gone)
		}
		if got := fc.created[0].Hardware.Reservation; !slices.Equal(got.IDs, []string{"r-1"}) || got.NextAvailable {
			t.Errorf("create asked for %+v, want exactly reservation r-1", got)
		}
	})
}

// A create on the reservation a delete of the same wave frees: that
// delete runs first (not after the wave's creates, which would wait for it
// forever), and the create follows once the device is gone.
func TestFreedCreateInTheDeletesWave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		gone := fc.seed(slotName("ams1", 1), "oldrev000000")
		c := createChange(slotName("ams1", 2))
		c.Desired.Hardware.Reservation = spec.Reservation{NextAvailable: true}
		c.Reservation, c.ReservationAfter = "r-1", gone.ID
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		res, err := Apply(ctx, fc, mkPlan(rollout(), deleteChange(gone), c), Options{})
		if err != nil || res.Created != 1 || res.Deleted != 1 {
			t.Fatalf("apply: %v, %+v", err, res)
		}
		log := fc.log()
		if len(log) != 2 || log[0].op != "delete" || log[1].op != "create" || log[1].at.Before(fc.dev(gone.ID).deleted.Add(fc.deprovision)) {
			t.Errorf("calls = %+v, want the delete, then the create once the device is gone", log)
		}
	})
}

// A replacement that takes the reservation another change's delete frees
// waits for that device to be gone, then replaces its own old device as
// usual: it never deletes the other device a second time, and its own old
// device does not stay behind.
func TestReplaceOnFreedReservationReplacesItsOwnDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		goneSlot, slot := slotName("ams1", 1), slotName("ams1", 2)
		gone := fc.seed(goneSlot, "oldrev000000")
		old := fc.seed(slot, "oldrev000000")
		c := liveChange(planner.Replace, old, "")
		c.Desired.Hardware.Reservation = spec.Reservation{NextAvailable: true}
		c.Reservation, c.ReservationAfter = "r-1", gone.ID
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		res, err := Apply(ctx, fc, mkPlan(rollout(), deleteChange(gone), c), Options{})
		if err != nil || res.Replaced != 1 || res.Deleted != 1 {
			t.Fatalf("apply: %v, %+v", err, res)
		}
		if got := fc.ops(goneSlot); !slices.Equal(got, []string{"delete"}) {
			t.Errorf("calls on %s = %v, want one delete", goneSlot, got)
		}
		if got := fc.ops(slot); !slices.Equal(got, []string{"create", "delete"}) {
			t.Errorf("calls on %s = %v, want create then delete of the old device", slot, got)
		}
	})
}

// With create_batch, spot creates and creates that wait for a freed
// reservation are sent alone: a batch entry cannot carry the numeric bid,
// and a waiting entry would hold its batch back.
func TestBatchLeavesSpotAndFreedReservationCreatesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newBatchFake()
		plain, spot, freed := createChange(slotName("ams1", 1)), createChange(slotName("ams1", 2)), createChange(slotName("ams1", 3))
		spot.Desired.Hardware.SpotMaxPrice = 0.5
		freed.Desired.Hardware.Reservation = spec.Reservation{NextAvailable: true}
		freed.Reservation, freed.ReservationAfter = "r-1", "old-gone"
		plain2 := createChange(slotName("ams1", 4))
		ro := rollout()
		ro.CreateBatch = 10
		res, err := Apply(t.Context(), fc, mkPlan(ro, plain, spot, freed, plain2), Options{})
		if err != nil || res.Created != 4 {
			t.Fatalf("apply: %v, %+v", err, res)
		}
		if want := [][]string{{plain.Slot(), plain2.Slot()}}; !slices.EqualFunc(fc.batches, want, slices.Equal) {
			t.Errorf("batches = %v, want %v", fc.batches, want)
		}
		for _, c := range []planner.Change{spot, freed} {
			if got := fc.ops(c.Slot()); !slices.Equal(got, []string{"create"}) {
				t.Errorf("calls on %s = %v, want one create of its own", c.Slot(), got)
			}
		}
	})
}

// --wait ends with the termination of an outbid spot device instead of
// waiting for it.
func TestWaitReportsSpotTermination(t *testing.T) {
	l := planner.Live{ID: "d", State: "active", TerminationTime: time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)}
	if got := terminating(l); got != "spot instance outbid: the service terminates it at 2026-12-01T21:00:00Z" {
		t.Errorf("terminating = %q", got)
	}
	if terminating(planner.Live{ID: "d"}) != "" {
		t.Error("a device without termination_time counts as terminating")
	}
}
