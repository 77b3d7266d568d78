package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var zones = []string{"ams1", "ewr1", "sjc1"}

func rollout() spec.Rollout {
	return spec.Rollout{Waves: [][]string{{"ams1"}, {"ewr1"}, {"sjc1"}}, MaxInFlight: 10,
		MaxUnavailable: spec.Budget{Count: 1}, Rebuild: spec.StrategyReboot}
}

// desired builds the desired device of slot "web/<zone>/<i>".
func desired(slot, rev string) *spec.Device {
	p := strings.Split(slot, "/")
	i, _ := strconv.Atoi(p[2])
	d := &spec.Device{Slot: slot, Fleet: "lab", Group: p[0], Zone: p[1], Index: i, Wave: slices.Index(zones, p[1]),
		Hostname: hostOf(slot), Machine: spec.DefaultMach, Billing: spec.DefaultBill, AlwaysPXE: true,
		Script: "#!ipxe\nchain http://127.0.0.1/" + rev, Rev: rev}
	return d
}

func slotName(zone string, i int) string { return spec.SlotName("web", zone, i) }

func createChange(slot string) planner.Change {
	d := desired(slot, "newrev000000")
	return planner.Change{Action: planner.Create, Wave: d.Wave, Desired: d}
}

func liveChange(a planner.Action, l planner.Live, strategy string) planner.Change {
	d := desired(l.Slot(), "newrev000000")
	return planner.Change{Action: a, Wave: d.Wave,
		Live: &l, Desired: d, Strategy: spec.Strategy(strategy)}
}

func deleteChange(l planner.Live) planner.Change {
	c := liveChange(planner.Delete, l, "")
	c.Desired = nil
	return c
}

// quiet is an Options.QuietSince for tests without an earlier run: no
// create waits out the list lag.
func quiet() time.Time { return time.Now().Add(-time.Hour) }

func mkPlan(r spec.Rollout, changes ...planner.Change) planner.Plan {
	return planner.Plan{Fleet: "lab", Rollout: r, Changes: changes}
}

// events records the event stream.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) add(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) kinds(slot string) []EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []EventKind
	for _, ev := range e.all {
		if slot == "" || ev.Slot == slot || ev.Slot == "" {
			out = append(out, ev.Kind)
		}
	}
	return out
}

func (e *events) first(kind EventKind, slot string) (Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.all {
		if ev.Kind == kind && ev.Slot == slot {
			return ev, true
		}
	}
	return Event{}, false
}

func TestCreateEventStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		var ev events
		slot := slotName("ams1", 1)
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slot)), Options{OnEvent: ev.add, QuietSince: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		if res.Created != 1 {
			t.Errorf("Created = %d, want 1", res.Created)
		}
		want := []EventKind{WaveStarted, ChangeStarted, ChangeDone, DeviceState, DeviceState, DeviceReady, WaveDone}
		if got := ev.kinds(""); !slices.Equal(got, want) {
			t.Errorf("events = %v\nwant %v", got, want)
		}
		ready, _ := ev.first(DeviceReady, slot)
		// Ready is noticed within one poll of the device turning active.
		active := fc.dev(ready.DeviceID).states[1].at
		if d := ready.Time.Sub(active); d < 0 || d > time.Second {
			t.Errorf("ready noticed %v after active, want within 1s", d)
		}
	})
}

func TestWavesRunInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		var changes []planner.Change
		for _, z := range zones {
			for i := 1; i <= 4; i++ {
				changes = append(changes, createChange(slotName(z, i)))
			}
		}
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), changes...), Options{Wait: WaitBooted})
		if err != nil || res.Created != 12 {
			t.Fatalf("Created %d, err %v", res.Created, err)
		}
		// Every create of wave w+1 comes after every device of wave w booted.
		var lastReady [3]time.Time
		var firstCreate [3]time.Time
		for _, c := range fc.log() {
			w := slices.Index(zones, strings.Split(c.slot, "/")[1])
			if firstCreate[w].IsZero() {
				firstCreate[w] = c.at
			}
			if b := fc.bootedAfter(c.id, c.at); b.After(lastReady[w]) {
				lastReady[w] = b
			}
		}
		for w := 1; w < 3; w++ {
			if firstCreate[w].Before(lastReady[w-1]) {
				t.Errorf("wave %d started at %v, before wave %d was ready at %v", w, firstCreate[w], w-1, lastReady[w-1])
			}
		}
	})
}

func TestParallelismBound(t *testing.T) {
	for _, tc := range []struct {
		parallelism, maxInFlight, want int
	}{{0, 0, 10}, {3, 0, 3}, {20, 5, 5}, {4, 8, 4}} {
		t.Run(fmt.Sprintf("p%d_m%d", tc.parallelism, tc.maxInFlight), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := newFake()
				r := rollout()
				r.MaxInFlight = tc.maxInFlight
				var changes []planner.Change
				for i := 1; i <= 40; i++ {
					changes = append(changes, createChange(slotName("ams1", i)))
				}
				if _, err := Apply(t.Context(), fc, mkPlan(r, changes...), Options{Parallelism: tc.parallelism, Wait: WaitNone}); err != nil {
					t.Fatal(err)
				}
				if fc.maxInFlight != tc.want {
					t.Errorf("peak concurrent calls = %d, want %d", fc.maxInFlight, tc.want)
				}
			})
		})
	}
}

// seedWave seeds n booted devices in zone and returns them.
func seedWave(fc *fakeCloud, zone string, n int) ([]planner.Live, []string) {
	var lives []planner.Live
	var slots []string
	for i := 1; i <= n; i++ {
		l := fc.seed(slotName(zone, i), "oldrev000000")
		lives = append(lives, l)
		slots = append(slots, l.Slot())
	}
	return lives, slots
}

func TestMaxUnavailableBound(t *testing.T) {
	for _, tc := range []struct {
		name     string
		budget   spec.Budget
		strategy string
		action   planner.Action
		want     int // peak slots out of service
	}{
		{"reboot count 2", spec.Budget{Count: 2}, "reboot", planner.Rebuild, 2},
		{"reinstall 30%", spec.Budget{Percent: 30}, "reinstall", planner.Rebuild, 3},
		{"reboot 1", spec.Budget{Count: 1}, "reboot", planner.Rebuild, 1},
		// A replacement's slot is served by the new device before the old
		// one goes: the slot is never out of service.
		{"replace", spec.Budget{Count: 1}, "", planner.Replace, 0},
		{"recreate", spec.Budget{Count: 1}, "recreate", planner.Rebuild, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := newFake()
				lives, slots := seedWave(fc, "ams1", 10)
				r := rollout()
				r.MaxUnavailable = tc.budget
				var changes []planner.Change
				for _, l := range lives {
					changes = append(changes, liveChange(tc.action, l, tc.strategy))
				}
				start := time.Now()
				res, err := Apply(t.Context(), fc, mkPlan(r, changes...), Options{Wait: WaitBooted})
				if err != nil {
					t.Fatal(err)
				}
				if res.Rebuilt+res.Replaced != 10 {
					t.Errorf("result %+v, want 10 done", res)
				}
				if got := fc.maxUnavailable(slots, start); got != tc.want {
					t.Errorf("peak slots out of service = %d, want %d", got, tc.want)
				}
			})
		})
	}
}

func TestCanaryGoesFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		lives, _ := seedWave(fc, "ams1", 6)
		ewr, _ := seedWave(fc, "ewr1", 2)
		r := rollout()
		r.Canary = 2
		r.MaxUnavailable = spec.Budget{Count: 4}
		var changes []planner.Change
		for _, l := range append(lives, ewr...) {
			changes = append(changes, liveChange(planner.Rebuild, l, "reboot"))
		}
		var ev events
		res, err := Apply(t.Context(), fc, mkPlan(r, changes...), Options{Wait: WaitBooted, OnEvent: ev.add})
		if err != nil || res.Rebuilt != 8 {
			t.Fatalf("Rebuilt %d, err %v", res.Rebuilt, err)
		}
		canaries := map[string]bool{lives[0].Slot(): true, lives[1].Slot(): true}
		var canaryReady time.Time
		for s := range canaries {
			e, _ := ev.first(DeviceReady, s)
			if e.Time.After(canaryReady) {
				canaryReady = e.Time
			}
		}
		for _, c := range fc.log() {
			if !canaries[c.slot] && c.at.Before(canaryReady) {
				t.Errorf("%s of %s at %v, before the canaries were ready at %v", c.op, c.slot, c.at, canaryReady)
			}
		}
		// The second wave gets no canary phase: its two rebuilds run together.
		e0, _ := ev.first(ChangeStarted, ewr[0].Slot())
		e1, _ := ev.first(ChangeStarted, ewr[1].Slot())
		if !e0.Time.Equal(e1.Time) {
			t.Errorf("wave 1 rebuilds started at %v and %v, want together", e0.Time, e1.Time)
		}
	})
}

func TestHaltOnFailuresThenResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		bad := slotName("ams1", 2)
		fc.provFail[bad] = 2 // fails, and fails again on its retry
		var changes []planner.Change
		for _, z := range zones[:2] {
			for i := 1; i <= 3; i++ {
				changes = append(changes, createChange(slotName(z, i)))
			}
		}
		var ev events
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), changes...), Options{OnEvent: ev.add})
		if !errors.Is(err, ErrHalted) {
			t.Fatalf("err = %v, want ErrHalted", err)
		}
		if !res.Halted || strings.Contains(res.HaltReason, "again") || !strings.HasPrefix(res.HaltReason, "wave 1 (ams1): 1 failed") {
			t.Errorf("Halted %v, reason %q", res.Halted, res.HaltReason)
		}
		if res.Created != 2 || len(res.Failed) != 1 || len(res.NotDone) != 3 {
			t.Errorf("result: created %d failed %v notdone %d", res.Created, res.Failed, len(res.NotDone))
		}
		for _, c := range fc.log() {
			if strings.Contains(c.slot, "ewr1") {
				t.Errorf("wave 1 was touched: %s %s", c.op, c.slot)
			}
		}
		for _, c := range res.NotDone {
			if c.Wave != 1 {
				t.Errorf("not done: %s, want only wave 1", c.Slot())
			}
		}
		if _, ok := ev.first(Halted, ""); !ok {
			t.Error("no halted event")
		}
		// The fault is fixed; the next plan replaces the failed device and
		// creates wave 1.
		var failedLive planner.Live
		lives, _ := fc.List(t.Context())
		for _, l := range lives {
			if l.Slot() == bad {
				failedLive = l
			}
		}
		if failedLive.State != "failed" {
			t.Fatalf("failed slot state %q", failedLive.State)
		}
		next := append([]planner.Change{liveChange(planner.Replace, failedLive, "")}, res.NotDone...)
		res, err = Apply(t.Context(), fc, mkPlan(rollout(), next...), Options{})
		if err != nil || res.Replaced != 1 || res.Created != 3 {
			t.Fatalf("resume: %+v, %v", res, err)
		}
		for s, ids := range fc.liveBySlot() {
			if len(ids) != 1 {
				t.Errorf("slot %s has %v", s, ids)
			}
		}
	})
}

func TestMaxFailuresTolerated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.provFail[slotName("ams1", 1)] = 2
		r := rollout()
		r.MaxFailures = 1
		p := mkPlan(r, createChange(slotName("ams1", 1)), createChange(slotName("ams1", 2)), createChange(slotName("ewr1", 1)))
		res, err := Apply(t.Context(), fc, p, Options{})
		if res.Halted || res.Created != 2 || len(res.Failed) != 1 {
			t.Errorf("result %+v", res)
		}
		if err == nil || errors.Is(err, ErrHalted) {
			t.Errorf("err = %v, want the failed device only", err)
		}
	})
}

func TestCancelLetsCallsInFlightFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.callDelay = 2 * time.Second
		var changes []planner.Change
		for i := 1; i <= 5; i++ {
			changes = append(changes, createChange(slotName("ams1", i)))
		}
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(time.Second) // Ctrl-C while the first two creates are in flight
			cancel()
		}()
		res, err := Apply(ctx, fc, mkPlan(rollout(), changes...), Options{Parallelism: 2, QuietSince: quiet()})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		log := fc.log()
		if len(log) != 2 || log[0].finished.IsZero() || log[1].finished.IsZero() || log[0].id == "" {
			t.Errorf("calls %+v, want the two creates in flight, finished", log)
		}
		if res.Created != 2 || len(res.NotDone) != 3 {
			t.Errorf("created %d, not done %d", res.Created, len(res.NotDone))
		}
		if got := time.Since(log[0].at); got > 3*time.Second {
			t.Errorf("apply returned %v after start; it should stop waiting at once", got)
		}
	})
}

func TestTimeoutBoundsApply(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		start := time.Now()
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slotName("ams1", 1)), createChange(slotName("ewr1", 1))),
			Options{Timeout: 10 * time.Second})
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 10*time.Second {
			t.Errorf("err %v after %v", err, time.Since(start))
		}
		if len(res.NotDone) != 1 || res.NotDone[0].Wave != 1 {
			t.Errorf("not done %v", res.NotDone)
		}
	})
}

func TestWaitCostsOneListPerPoll(t *testing.T) {
	for _, n := range []int{1, 200} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := newFake()
				fc.callDelay = 0
				r := rollout()
				r.MaxInFlight = 0
				var changes []planner.Change
				for i := 1; i <= n; i++ {
					changes = append(changes, createChange(slotName("ams1", i)))
				}
				res, err := Apply(t.Context(), fc, mkPlan(r, changes...), Options{Parallelism: 1000, QuietSince: quiet()})
				if err != nil || res.Created != n {
					t.Fatalf("created %d, %v", res.Created, err)
				}
				// 30s of provisioning at one listing a second.
				if fc.lists < 29 || fc.lists > 32 {
					t.Errorf("%d listings for %d devices over 30s, want about 30", fc.lists, n)
				}
			})
		})
	}
}

func TestWaitNoneDoesNotList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		start := time.Now()
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slotName("ams1", 1)), createChange(slotName("ewr1", 1))),
			Options{Wait: WaitNone, QuietSince: quiet()})
		if err != nil || res.Created != 2 || fc.lists != 0 || time.Since(start) > time.Second {
			t.Errorf("created %d, %v, lists %d, took %v", res.Created, err, fc.lists, time.Since(start))
		}
	})
}

func TestParseWaitMode(t *testing.T) {
	for in, want := range map[string]WaitMode{"": WaitActive, "active": WaitActive, "booted": WaitBooted, "none": WaitNone} {
		if got, err := ParseWaitMode(in); err != nil || got != want {
			t.Errorf("ParseWaitMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseWaitMode("ready"); err == nil {
		t.Error("ParseWaitMode(ready) succeeded")
	}
}

func TestPercentBudgetCountsNoOpDevices(t *testing.T) {
	for _, tc := range []struct {
		noops bool
		want  int
	}{{false, 1}, {true, 2}} {
		t.Run(fmt.Sprint("noops=", tc.noops), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := newFake()
				lives, slots := seedWave(fc, "ams1", 10)
				r := rollout()
				r.MaxUnavailable = spec.Budget{Percent: 50}
				changes := []planner.Change{liveChange(planner.Rebuild, lives[0], "reboot"), liveChange(planner.Rebuild, lives[1], "reboot")}
				if tc.noops {
					for _, l := range lives[2:] {
						changes = append(changes, liveChange(planner.NoOp, l, ""))
					}
				}
				start := time.Now()
				res, err := Apply(t.Context(), fc, mkPlan(r, changes...), Options{Wait: WaitBooted})
				if err != nil || res.Rebuilt != 2 {
					t.Fatalf("Rebuilt %d, %v", res.Rebuilt, err)
				}
				// 50% of the 2 changed devices is 1; of the wave's 10 it is 5.
				if got := fc.maxUnavailable(slots, start); got != tc.want {
					t.Errorf("peak slots out of service = %d, want %d", got, tc.want)
				}
			})
		})
	}
}

func TestHaltStopsChangesWaitingForBudget(t *testing.T) {
	// The halt races the failed device's budget unit going back to the next
	// device waiting for it; repeat so that losing the race shows.
	for range 100 {
		haltStopsChangesWaitingForBudget(t)
	}
}

func haltStopsChangesWaitingForBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		lives, _ := seedWave(fc, "ams1", 5)
		var changes []planner.Change
		for _, l := range lives {
			fc.bootFail[l.Slot()] = 2 // a broken image: every boot fails
			changes = append(changes, liveChange(planner.Rebuild, l, "reboot"))
		}
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), changes...), Options{Wait: WaitBooted})
		if !errors.Is(err, ErrHalted) || len(res.Failed) != 1 || len(res.NotDone) != 4 {
			t.Fatalf("err %v; failed %v; not done %d", err, res.Failed, len(res.NotDone))
		}
		touched := map[string]bool{}
		for _, c := range fc.log() {
			touched[c.slot] = true
		}
		if len(touched) != 1 {
			t.Errorf("calls touched %d slots, want only the first rebuild's", len(touched))
		}
	})
}

func TestWaitToleratesListLag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.listLag = 40 * time.Second // longer than provisioning
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slotName("ams1", 1))), Options{ListLag: 45 * time.Second})
		if err != nil || res.Created != 1 || len(fc.log()) != 1 {
			t.Errorf("created %d, %v, calls %v", res.Created, err, fc.log())
		}
	})
}

// An API that stays unreachable ends the wait after MaxListOutage with an
// error that names the outage — not an endless wait, and not Ctrl-C.
func TestListOutageEndsTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.listErr = errors.New("list devices: no answer: connection refused")
		start := time.Now()
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slotName("ams1", 1)), createChange(slotName("ewr1", 1))),
			Options{MaxListOutage: time.Minute, QuietSince: quiet()})
		if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the outage", err)
		}
		if !strings.Contains(err.Error(), "could not be listed for 1m0s") || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("err = %v", err)
		}
		if took := time.Since(start); took < time.Minute || took > time.Minute+2*DefaultPollInterval {
			t.Errorf("gave up after %v, want about 1m", took)
		}
		if res.Created != 1 || len(res.NotDone) != 1 || res.NotDone[0].Wave != 1 {
			t.Errorf("result %+v: want the wave-1 create done and wave 2 not done", res)
		}
	})
}
