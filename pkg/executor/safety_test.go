package executor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lkfleet/lkfleet/pkg/network"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// provisioning makes a device of slot through the fake's Create: it is
// provisioning now and active after fc.provision.
func provisioning(t *testing.T, fc *fakeCloud, slot string) planner.Live {
	t.Helper()
	l, err := fc.Create(context.Background(), *desired(slot, "newrev000000"))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Issue 14 case 1, the executor's half: the delete of an active duplicate
// waits until the device the slot keeps is ready, and never goes ahead
// when that device fails instead — the slot must not end without a
// serving device.
func TestDuplicateDeleteWaitsForTheKeeper(t *testing.T) {
	for _, keeperFails := range []bool{false, true} {
		name := map[bool]string{false: "keeper comes up", true: "keeper fails"}[keeperFails]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := newFake()
				slot := slotName("ams1", 1)
				dup := fc.seed(slot, "newrev000000")
				if keeperFails {
					fc.provFail[slot] = 1
				}
				keep := provisioning(t, fc, slot)
				start := time.Now()
				c := deleteChange(dup)
				c.Keeper = keep.ID
				res, err := Apply(t.Context(), fc, mkPlan(rollout(), c), Options{QuietSince: quiet()})
				ids := fc.liveBySlot()[slot]
				if keeperFails {
					if err == nil || len(res.Failed) != 1 || !strings.Contains(res.Failed[0].LastEvent, "duplicate not deleted") {
						t.Fatalf("err %v, failed %v: want the delete refused", err, res.Failed)
					}
					if !slices.Contains(ids, dup.ID) {
						t.Errorf("slot holds %v: the only serving device %s was deleted", ids, dup.ID)
					}
					return
				}
				if err != nil || res.Deleted != 1 {
					t.Fatalf("deleted %d, %v", res.Deleted, err)
				}
				var del fcall
				for _, cl := range fc.log() {
					if cl.op == "delete" {
						del = cl
					}
				}
				if del.at.Sub(start) < fc.provision {
					t.Errorf("duplicate deleted %v after start, before the keeper was active (%v)", del.at.Sub(start), fc.provision)
				}
				if !slices.Equal(ids, []string{keep.ID}) {
					t.Errorf("slot holds %v, want the keeper %s", ids, keep.ID)
				}
			})
		})
	}
}

// A failed duplicate serves nothing: it is deleted at once.
func TestFailedDuplicateIsDeletedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		slot := slotName("ams1", 1)
		dup := fc.seed(slot, "newrev000000")
		dup.State = planner.StateFailed
		keep := provisioning(t, fc, slot)
		c := deleteChange(dup)
		c.Keeper = keep.ID
		start := time.Now()
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), c), Options{QuietSince: quiet()})
		if err != nil || res.Deleted != 1 || time.Since(start) > time.Second {
			t.Errorf("deleted %d, %v after %v", res.Deleted, err, time.Since(start))
		}
	})
}

// Issue 14 case 3: a run killed a moment after its creates, and a re-run
// right away whose listing still hides those devices (list lag). The
// re-run must adopt them, not create every slot a second time — also for
// a replacement whose new device the killed run had made.
func TestRerunWithinListLagDoesNotDuplicate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.listLag = 3 * time.Second
		created, replaced := slotName("ams1", 1), slotName("ams1", 2)
		old := fc.seed(replaced, "oldrev000000")
		time.Sleep(time.Hour) // the old device is listed by now
		// The killed run: one create, and a replacement's new device.
		provisioning(t, fc, created)
		provisioning(t, fc, replaced)
		time.Sleep(500 * time.Millisecond)
		// The re-run's plan comes from a listing that shows neither.
		lives, _ := fc.List(t.Context())
		if len(lives) != 1 {
			t.Fatalf("listing shows %d devices, want only the old one", len(lives))
		}
		var ev events
		plan := mkPlan(rollout(), createChange(created), liveChange(planner.Replace, old, ""))
		res, err := Apply(t.Context(), fc, plan, Options{ListLag: 3 * time.Second, OnEvent: ev.add})
		if err != nil || res.Created != 1 || res.Replaced != 1 {
			t.Fatalf("created %d replaced %d, %v", res.Created, res.Replaced, err)
		}
		for _, slot := range []string{created, replaced} {
			if ids := fc.liveBySlot()[slot]; len(ids) != 1 || ids[0] == old.ID {
				t.Errorf("slot %s holds %v, want one new device", slot, ids)
			}
			if n := strings.Count(strings.Join(fc.ops(slot), " "), "create"); n != 1 {
				t.Errorf("slot %s: %d creates (%v), want only the killed run's", slot, n, fc.ops(slot))
			}
		}
		if _, ok := ev.first(Info, created); !ok {
			t.Errorf("no event says the device was adopted")
		}
	})
}

// The list-lag fence comes before network convergence: a re-run adopts
// the device a killed run created (hidden by the lag) and converges that
// device's ports, instead of creating a second one.
func TestRerunAdoptsAndConvergesNetwork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newNetFake()
		fc.listLag = 3 * time.Second
		slot := slotName("ams1", 1)
		killed := provisioning(t, fc.fakeCloud, slot) // the killed run's create, ports untouched
		c := createChange(slot)
		c.Desired.NetworkType = "layer2-individual"
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), c), Options{ListLag: 3 * time.Second})
		if err != nil || res.Created != 1 {
			t.Fatalf("created %d, %v", res.Created, err)
		}
		if ids := fc.liveBySlot()[slot]; len(ids) != 1 || ids[0] != killed.ID {
			t.Errorf("slot holds %v, want only the killed run's %s", ids, killed.ID)
		}
		if got := fc.typeOf(killed.ID); got != network.Layer2Individual {
			t.Errorf("adopted device is %s, want layer2-individual", got)
		}
	})
}

// With create_batch, a slot the fence adopts leaves its batch at once:
// the other creates of the batch go out after the list lag, not once the
// adopted device is ready (30 s of provisioning later).
func TestBatchedCreatesDoNotWaitForAnAdoptedSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newBatchFake()
		f.listLag = 3 * time.Second
		killed := provisioning(t, f.fakeCloud, slotName("ams1", 1))
		ro := rollout()
		ro.CreateBatch = 10
		changes := creates(3, "ams1")
		var ev events
		res, err := Apply(t.Context(), f, mkPlan(ro, changes...), Options{ListLag: 3 * time.Second, OnEvent: ev.add})
		if err != nil || res.Created != 3 {
			t.Fatalf("created %d, %v", res.Created, err)
		}
		checkOnePerSlot(t, f, changes)
		if ids := f.liveBySlot()[changes[0].Slot()]; len(ids) != 1 || ids[0] != killed.ID {
			t.Errorf("slot %s holds %v, want the killed run's %s", changes[0].Slot(), ids, killed.ID)
		}
		ready, ok := ev.first(DeviceReady, changes[0].Slot())
		if !ok {
			t.Fatalf("adopted device never ready: %+v", ev.all)
		}
		if b := f.batchLog(); len(b) != 1 || len(b[0]) != 2 {
			t.Fatalf("batches %v, want one of the two other slots", b)
		}
		for _, c := range changes[1:] {
			d := f.dev(f.liveBySlot()[c.Slot()][0])
			if !d.created.Before(ready.Time) {
				t.Errorf("slot %s created at %s, after the adopted device was ready (%s): the batch waited for it",
					c.Slot(), d.created.Format(time.StampMilli), ready.Time.Format(time.StampMilli))
			}
		}
	})
}

// Issue 14 case 4: kill -9 between a rebuild's PUT and its reboot. What
// the PUT left must tell the next plan (and status) that the device did
// not boot the new rev; once the reboot is accepted the marker goes.
func TestRebuildPutLeavesPendingUntilTheRebootIsAccepted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "oldrev000000")
		fc.actionGate = make(chan struct{})
		done := make(chan error, 1)
		go func() {
			_, err := Apply(t.Context(), fc, mkPlan(rollout(), liveChange(planner.Rebuild, old, "reboot")), Options{QuietSince: quiet()})
			done <- err
		}()
		time.Sleep(time.Second)
		synctest.Wait() // the PUT is done, the reboot held: a kill now leaves this
		l := fc.liveAt(fc.dev(old.ID), time.Now())
		if l.Pending() != "newrev000000" || l.Rev() != "oldrev000000" || !strings.Contains(l.Userdata, "newrev") {
			t.Errorf("after the PUT: pending %q, rev %q, userdata %q; want pending newrev, rev oldrev, new userdata",
				l.Pending(), l.Rev(), l.Userdata)
		}
		close(fc.actionGate)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		l = fc.liveAt(fc.dev(old.ID), time.Now())
		if l.Pending() != "" || l.Rev() != "newrev000000" {
			t.Errorf("after the reboot: pending %q, rev %q", l.Pending(), l.Rev())
		}
	})
}

// A refused reboot leaves the pending marker (the userdata is already
// new), so the next plan rebuilds the device.
func TestRefusedRebootKeepsPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "oldrev000000")
		fc.actionErr = errors.New("422 device is locked")
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), liveChange(planner.Rebuild, old, "reboot")), Options{QuietSince: quiet()})
		if err == nil || len(res.Failed) != 1 {
			t.Fatalf("err %v, failed %v", err, res.Failed)
		}
		d := fc.dev(old.ID)
		if !slices.Contains(d.tags, planner.TagPending+"newrev000000") || !slices.Contains(d.tags, spec.TagRev+"oldrev000000") {
			t.Errorf("tags %v, want the pending marker and the old rev", d.tags)
		}
	})
}

// Issue 14 case 7: a created device that disappears before it is first
// listed must not be waited for forever: after the list lag and a margin
// it counts as failed and is created again (or fails the change).
func TestDeviceGoneBeforeFirstListing(t *testing.T) {
	for _, retries := range []int{1, -1} {
		t.Run(map[int]string{1: "retried", -1: "failed"}[retries], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := newFake()
				fc.listLag = 3 * time.Second
				slot := slotName("ams1", 1)
				fc.vanish[slot] = 1
				res, err := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slot)),
					Options{ListLag: 3 * time.Second, FailedRetries: retries, QuietSince: quiet(), Timeout: time.Hour})
				if errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("waited until the timeout: %v", err)
				}
				if retries < 0 {
					if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].LastEvent, "never listed") {
						t.Errorf("failed %v, want the device named missing", res.Failed)
					}
					return
				}
				if err != nil || res.Created != 1 || len(fc.liveBySlot()[slot]) != 1 {
					t.Errorf("created %d, %v, slot %v", res.Created, err, fc.liveBySlot()[slot])
				}
				// The vanished device's delete answers 404 (the fake logs no slot for it).
				if got, want := fc.ops(slot), []string{"create", "create"}; !slices.Equal(got, want) {
					t.Errorf("calls %v, want %v", got, want)
				}
			})
		})
	}
}

// The same for a create whose group has a network type: its wait for
// active (before the ports converge) also counts a never-listed device
// missing, and no port call goes to it.
func TestNetworkDeviceGoneBeforeFirstListing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newNetFake()
		fc.listLag = 3 * time.Second
		slot := slotName("ams1", 1)
		fc.vanish[slot] = 1
		c := createChange(slot)
		c.Desired.NetworkType = "layer2-individual"
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), c),
			Options{ListLag: 3 * time.Second, FailedRetries: -1, QuietSince: quiet(), Timeout: time.Hour})
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("waited until the timeout: %v", err)
		}
		if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].LastEvent, "never listed") {
			t.Errorf("failed %v, want the device named missing", res.Failed)
		}
		if len(fc.steps) != 0 {
			t.Errorf("port calls %v to a device that was never listed", fc.steps)
		}
	})
}

// A keeper that will not come up by itself (powered off) is not waited
// for forever: the active duplicate is kept and the change fails.
func TestDuplicateNextToAPoweredOffKeeperIsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		slot := slotName("ams1", 1)
		keep := fc.seed(slot, "newrev000000")
		fc.dev(keep.ID).states = append(fc.dev(keep.ID).states, tstate{time.Now(), "inactive"})
		dup := fc.seed(slot, "newrev000000")
		c := deleteChange(dup)
		c.Keeper = keep.ID
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), c), Options{QuietSince: quiet(), Timeout: time.Hour})
		if errors.Is(err, context.DeadlineExceeded) || len(res.Failed) != 1 {
			t.Fatalf("err %v, failed %v: want the delete refused, not a wait until the timeout", err, res.Failed)
		}
		if ids := fc.liveBySlot()[slot]; !slices.Contains(ids, dup.ID) {
			t.Errorf("slot holds %v: the active duplicate was deleted", ids)
		}
	})
}

// Issue 14 case 1 end to end in the executor: two plans of one slot that
// disagree on the keeper (what the old rule gave at two moments: first
// "keep the old active device", then "keep the new one, now active") are
// applied one after the other. The guard alone must keep the slot from
// ending empty: the second plan's delete finds no other ready device.
func TestDisagreeingDuplicatePlansNeverEmptyTheSlot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		slot := slotName("ams1", 1)
		old := fc.seed(slot, "newrev000000")
		young := provisioning(t, fc, slot)
		first := deleteChange(young)
		first.Keeper = old.ID
		young.State = planner.StateActive
		second := deleteChange(old)
		second.Keeper = young.ID
		if _, err := Apply(t.Context(), fc, mkPlan(rollout(), first), Options{QuietSince: quiet()}); err != nil {
			t.Fatalf("first plan: %v", err)
		}
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), second), Options{QuietSince: quiet()})
		if err == nil || res.Deleted != 0 {
			t.Errorf("second plan deleted %d, err %v: want its delete refused", res.Deleted, err)
		}
		if ids := fc.liveBySlot()[slot]; len(ids) != 1 || ids[0] != old.ID {
			t.Errorf("slot holds %v, want the old device %s", ids, old.ID)
		}
	})
}
