package executor

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

func TestAmbiguousCreatesNeverDuplicate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		faults  []fault
		listLag time.Duration
		creates int
	}{
		{"created", []fault{ambCreated}, 0, 1},
		{"created behind list lag", []fault{ambCreated}, 3 * time.Second, 1},
		{"absent", []fault{ambAbsent}, 0, 2},
		{"absent twice", []fault{ambAbsent, ambAbsent}, time.Second, 3},
		{"absent then created", []fault{ambAbsent, ambCreated}, 2 * time.Second, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := newFake()
				fc.listLag = tc.listLag
				slot := slotName("ams1", 1)
				fc.createFaults[slot] = tc.faults
				res, err := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slot)), Options{})
				if err != nil || res.Created != 1 {
					t.Fatalf("Created %d, err %v", res.Created, err)
				}
				if n := len(fc.liveBySlot()[slot]); n != 1 {
					t.Errorf("%d devices in the slot, want 1", n)
				}
				if got := len(fc.ops(slot)); got != tc.creates {
					t.Errorf("calls %v, want %d creates", fc.ops(slot), tc.creates)
				}
			})
		})
	}
}

func TestAmbiguousCreateDuringReplaceIgnoresOldDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "oldrev000000")
		fc.createFaults[old.Slot()] = []fault{ambAbsent}
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), liveChange(planner.Replace, old, "")), Options{})
		if err != nil || res.Replaced != 1 {
			t.Fatalf("Replaced %d, err %v", res.Replaced, err)
		}
		ids := fc.liveBySlot()[old.Slot()]
		if len(ids) != 1 || ids[0] == old.ID {
			t.Errorf("slot holds %v, want one new device", ids)
		}
		if got, want := fc.ops(old.Slot()), []string{"create", "create", "delete"}; !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
}

func TestRefusedCreateFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		slot := slotName("ams1", 1)
		fc.createFaults[slot] = []fault{refused}
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slot)), Options{})
		if err == nil || !strings.Contains(err.Error(), "422") || len(res.Failed) != 1 {
			t.Fatalf("err %v, failed %v", err, res.Failed)
		}
		if got := fc.ops(slot); len(got) != 1 {
			t.Errorf("a refused create was retried: %v", got)
		}
	})
}

func TestFailedDeviceRetriedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		slot := slotName("ams1", 1)
		fc.provFail[slot] = 1
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slot)), Options{})
		if err != nil || res.Created != 1 {
			t.Fatalf("Created %d, err %v", res.Created, err)
		}
		if got, want := fc.ops(slot), []string{"create", "delete", "create"}; !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
}

func TestFailedDeviceReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		bad, good := slotName("ams1", 1), slotName("ams1", 2)
		fc.bootFail[bad] = 2
		r := rollout()
		r.MaxFailures = 1
		res, err := Apply(t.Context(), fc, mkPlan(r, createChange(bad), createChange(good)), Options{Wait: WaitBooted})
		if res.Created != 1 || len(res.Failed) != 1 {
			t.Fatalf("result %+v", res)
		}
		f := res.Failed[0]
		ids := fc.liveBySlot()[bad]
		if f.Slot != bad || f.Hostname != hostOf(bad) || len(ids) != 1 || f.ID != ids[0] || !strings.Contains(f.LastEvent, "kernel: 404") {
			t.Errorf("failed = %+v (live %v)", f, ids)
		}
		for _, want := range []string{hostOf(bad), bad, f.ID, "kernel: 404"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v does not name %q", err, want)
			}
		}
		if got, want := fc.ops(bad), []string{"create", "delete", "create"}; !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
}

func TestRetriesDisabled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		slot := slotName("ams1", 1)
		fc.provFail[slot] = 1
		res, _ := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slot)), Options{FailedRetries: -1})
		if len(res.Failed) != 1 || len(fc.ops(slot)) != 1 {
			t.Errorf("failed %v, calls %v", res.Failed, fc.ops(slot))
		}
	})
}

func TestRebuildStrategies(t *testing.T) {
	for _, tc := range []struct {
		strategy string
		wait     WaitMode
		ops      []string
		sameID   bool
	}{
		// The second update replaces the pending marker by the new rev.
		{"reboot", WaitActive, []string{"update", "action:reboot", "update"}, true},
		{"reboot", WaitBooted, []string{"update", "action:reboot", "update"}, true},
		{"reinstall", WaitActive, []string{"update", "action:reinstall", "update"}, true},
		{"recreate", WaitBooted, []string{"create", "delete"}, false},
	} {
		t.Run(tc.strategy+"_"+string(tc.wait), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := newFake()
				old := fc.seed(slotName("ams1", 1), "oldrev000000")
				var ev events
				res, err := Apply(t.Context(), fc, mkPlan(rollout(), liveChange(planner.Rebuild, old, tc.strategy)),
					Options{Wait: tc.wait, OnEvent: ev.add})
				if err != nil || res.Rebuilt != 1 {
					t.Fatalf("Rebuilt %d, err %v", res.Rebuilt, err)
				}
				if got := fc.ops(old.Slot()); !slices.Equal(got, tc.ops) {
					t.Errorf("calls %v, want %v", got, tc.ops)
				}
				ids := fc.liveBySlot()[old.Slot()]
				if len(ids) != 1 || (ids[0] == old.ID) != tc.sameID {
					t.Errorf("slot holds %v (old %s)", ids, old.ID)
				}
				d := fc.dev(ids[0])
				if !slices.Contains(d.tags, spec.TagRev+"newrev000000") || !strings.Contains(d.userdata, "newrev") {
					t.Errorf("device not rebuilt: tags %v userdata %q", d.tags, d.userdata)
				}
				// Ready means the new boot happened, not the old active state.
				ready, _ := ev.first(DeviceReady, old.Slot())
				log := fc.log()
				if booted := fc.bootedAfter(ids[0], log[0].at); booted.IsZero() || ready.Time.Before(booted) && tc.wait == WaitBooted {
					t.Errorf("ready at %v, booted at %v", ready.Time, booted)
				}
				if tc.strategy == "reboot" && tc.wait == WaitActive && ready.Time.Before(log[1].finished.Add(fc.boot)) {
					t.Errorf("reboot ready at %v before its boot finished", ready.Time)
				}
				if tc.strategy == "recreate" {
					// The old hardware goes only once the new device booted.
					if del := log[1].at; del.Before(fc.bootedAfter(ids[0], log[0].at)) {
						t.Errorf("old device deleted at %v before the new one was ready", del)
					}
				}
			})
		})
	}
}

func TestRebootNeedsAlwaysPXE(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "oldrev000000")
		c := liveChange(planner.Rebuild, old, "reboot")
		c.Desired.AlwaysPXE = false
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), c), Options{})
		if err == nil || !strings.Contains(err.Error(), "always_pxe") || len(fc.log()) != 0 {
			t.Errorf("err %v, result %+v, calls %v", err, res, fc.log())
		}
	})
}

func TestRebootActionFailureRestoresTags(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "oldrev000000")
		fc.actionErr = errors.New("503 service unavailable")
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), liveChange(planner.Rebuild, old, "reboot")), Options{})
		if err == nil || len(res.Failed) != 1 {
			t.Fatalf("err %v result %+v", err, res)
		}
		if got := fc.dev(old.ID).tags; !slices.Contains(got, spec.TagRev+"oldrev000000") {
			t.Errorf("tags after a failed reboot = %v, want the old rev back", got)
		}
	})
}

func TestReplaceCreatesBeforeDeleting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "oldrev000000")
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), liveChange(planner.Replace, old, "")), Options{})
		if err != nil || res.Replaced != 1 {
			t.Fatalf("Replaced %d, err %v", res.Replaced, err)
		}
		log := fc.log()
		if len(log) != 2 || log[0].op != "create" || log[1].op != "delete" || log[1].id != old.ID {
			t.Fatalf("calls %+v", log)
		}
		active := fc.dev(log[0].id).states[1].at
		if log[1].at.Before(active) {
			t.Errorf("old deleted at %v, new active only at %v", log[1].at, active)
		}
	})
}

func TestReplaceKeepsOldWhenNewFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "oldrev000000")
		fc.provFail[old.Slot()] = 2
		res, _ := Apply(t.Context(), fc, mkPlan(rollout(), liveChange(planner.Replace, old, "")), Options{})
		if len(res.Failed) != 1 || fc.dev(old.ID).deleted != (time.Time{}) {
			t.Errorf("failed %v; old device deleted: %v", res.Failed, fc.dev(old.ID).deleted)
		}
	})
}

func TestDeletesRunAfterTheWavesDevicesAreReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed("old/ams1/1", "oldrev000000")
		gone := planner.Live{ID: "already-gone", Tags: []string{spec.TagSlot + "old/ams1/2"}}
		p := mkPlan(rollout(), createChange(slotName("ams1", 1)), deleteChange(old), deleteChange(gone))
		res, err := Apply(t.Context(), fc, p, Options{})
		if err != nil || res.Created != 1 || res.Deleted != 2 {
			t.Fatalf("result %+v, %v", res, err)
		}
		log := fc.log()
		i := slices.IndexFunc(log, func(c fcall) bool { return c.op == "create" })
		active := fc.dev(log[i].id).states[1].at
		for _, c := range log {
			if c.op == "delete" && c.at.Before(active) {
				t.Errorf("delete at %v, before the create was active at %v", c.at, active)
			}
		}
	})
}

func TestUpdateIsOnePut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "newrev000000")
		c := liveChange(planner.Update, old, "")
		c.Desired.Hostname = "renamed"
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), c), Options{})
		if err != nil || res.Updated != 1 || len(fc.log()) != 1 {
			t.Fatalf("result %+v, %v, calls %v", res, err, fc.log())
		}
		if d := fc.dev(old.ID); d.host != "renamed" || !slices.Contains(d.tags, spec.TagRev+"newrev000000") {
			t.Errorf("device after update: %s %v", d.host, d.tags)
		}
	})
}

func TestAmbiguousActionSentAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		old := fc.seed(slotName("ams1", 1), "oldrev000000")
		fc.ambiguousActions = 1
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), liveChange(planner.Rebuild, old, "reboot")), Options{Wait: WaitBooted})
		if err != nil || res.Rebuilt != 1 {
			t.Fatalf("Rebuilt %d, %v", res.Rebuilt, err)
		}
		if got, want := fc.ops(old.Slot()), []string{"update", "action:reboot", "action:reboot", "update"}; !slices.Equal(got, want) {
			t.Errorf("calls %v, want %v", got, want)
		}
	})
}

// In-place rebuilds of a wave take their budget in plan (slot) order, so a
// rollout walks a wave's devices in the order the plan shows.
func TestInPlaceRebuildsFollowPlanOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		lives, _ := seedWave(fc, "ams1", 12)
		r := rollout()
		r.MaxUnavailable = spec.Budget{Count: 2}
		var changes []planner.Change
		for _, l := range lives {
			changes = append(changes, liveChange(planner.Rebuild, l, "reboot"))
		}
		var ev events
		res, err := Apply(t.Context(), fc, mkPlan(r, changes...), Options{Wait: WaitBooted, OnEvent: ev.add})
		if err != nil || res.Rebuilt != len(lives) {
			t.Fatalf("Rebuilt %d, err %v", res.Rebuilt, err)
		}
		var prev time.Time
		for _, l := range lives {
			e, ok := ev.first(ChangeStarted, l.Slot())
			if !ok {
				t.Fatalf("%s never started", l.Slot())
			}
			if e.Time.Before(prev) {
				t.Errorf("%s started at %v, before the slot ahead of it (%v)", l.Slot(), e.Time, prev)
			}
			prev = e.Time
		}
	})
}
