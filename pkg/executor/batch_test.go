package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// batchFake is the fake cloud with batch creates. A batch is one call (in
// flight for callDelay, counted against the call limit). Per-slot
// createFaults apply to the slot's entry; batchFaults, consumed one per
// batch, apply to the whole request.
type batchFake struct {
	*fakeCloud
	batchFaults []fault
	batches     [][]string // the slots of each batch, in order
}

func newBatchFake() *batchFake { return &batchFake{fakeCloud: newFake()} }

func (f *batchFake) CreateBatch(ctx context.Context, ds []spec.Device) ([]planner.Live, []error) {
	lives, errs := make([]planner.Live, len(ds)), make([]error, len(ds))
	all := func(err error) ([]planner.Live, []error) {
		for i := range errs {
			errs[i] = err
		}
		return lives, errs
	}
	n, err := f.begin(ctx, fcall{op: "batch"})
	if err != nil {
		return all(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.end(n)
	slots := make([]string, len(ds))
	for i, d := range ds {
		slots[i] = d.Slot
	}
	f.batches = append(f.batches, slots)
	var whole fault
	if len(f.batchFaults) > 0 {
		whole, f.batchFaults = f.batchFaults[0], f.batchFaults[1:]
	}
	switch whole {
	case refused:
		return all(errors.New("create device batch: 422 batches[1]: plan not available"))
	case ambAbsent:
		return all(&ambiguousErr{"create device batch: 502 bad gateway"})
	}
	now := time.Now()
	for i, d := range ds {
		var ft fault
		if q := f.createFaults[d.Slot]; len(q) > 0 {
			ft, f.createFaults[d.Slot] = q[0], q[1:]
		}
		switch ft {
		case refused:
			errs[i] = fmt.Errorf("create device %q: batch entry refused", d.Hostname)
			continue
		case ambAbsent:
			errs[i] = &ambiguousErr{"batch entry queued without a device"}
			continue
		}
		f.seq++
		dev := &fdev{id: fmt.Sprintf("dev-%d", f.seq), slot: d.Slot, host: d.Hostname, tags: d.Tags(),
			alwaysPXE: d.AlwaysPXE, userdata: d.APIUserdata(), created: now}
		f.provisionTimeline(dev, now)
		f.devs = append(f.devs, dev)
		lives[i] = f.liveAt(dev, now)
		if ft == ambCreated {
			errs[i] = &ambiguousErr{"batch entry failed without naming its device"}
		}
	}
	if whole == ambCreated {
		return all(&ambiguousErr{"create device batch: read: connection reset by peer"})
	}
	return lives, errs
}

func (f *batchFake) batchLog() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.batches)
}

// creates builds n create changes per zone, zone by zone.
func creates(n int, zs ...string) []planner.Change {
	var out []planner.Change
	for _, z := range zs {
		for i := 1; i <= n; i++ {
			out = append(out, createChange(slotName(z, i)))
		}
	}
	return out
}

// checkOnePerSlot fails t unless every slot of changes has exactly one
// device.
func checkOnePerSlot(t *testing.T, f *batchFake, changes []planner.Change) {
	t.Helper()
	live := f.liveBySlot()
	for _, c := range changes {
		if n := len(live[c.Slot()]); n != 1 {
			t.Errorf("slot %s has %d devices, want 1", c.Slot(), n)
		}
	}
}

// TestBatchCreatesShape: with create_batch 10, 25 creates per wave go out
// as batches of 10, 10 and 5 cut in plan order, never mixing waves, never more
// than max_in_flight requests at once, and no create is sent alone.
func TestBatchCreatesShape(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newBatchFake()
		ro := rollout()
		ro.CreateBatch, ro.MaxInFlight = 10, 2
		changes := creates(25, "ams1", "ewr1")
		res, err := Apply(t.Context(), f, mkPlan(ro, changes...), Options{})
		if err != nil || res.Created != 50 {
			t.Fatalf("Created %d, err %v", res.Created, err)
		}
		checkOnePerSlot(t, f, changes)
		var sizes []int
		for _, b := range f.batchLog() {
			sizes = append(sizes, len(b))
			zone := strings.Split(b[0], "/")[1]
			for i, s := range b {
				if !strings.Contains(s, "/"+zone+"/") || (i > 0 && spec.CompareSlots(b[i-1], s) >= 0) {
					t.Errorf("batch %v mixes waves or is out of plan order", b)
					break
				}
			}
		}
		slices.Sort(sizes)
		if want := []int{5, 5, 10, 10, 10, 10}; !slices.Equal(sizes, want) {
			t.Errorf("batch sizes %v, want %v", sizes, want)
		}
		// Cut in plan order, whichever change reached its create first:
		// each batch is a run of consecutive changes (concurrent batches
		// may go out in either order).
		pos := map[string]int{}
		for i, c := range changes {
			pos[c.Slot()] = i
		}
		for _, b := range f.batchLog() {
			first := pos[b[0]]
			if (first%25)%10 != 0 {
				t.Errorf("batch %v does not start at a multiple of 10 within its wave", b)
			}
			for i, s := range b {
				if pos[s] != first+i {
					t.Errorf("batch %v: entry %d is %s, want %s (plan order)", b, i, s, changes[first+i].Slot())
					break
				}
			}
		}
		for _, c := range f.log() {
			if c.op == "create" {
				t.Errorf("a create was sent alone for %s", c.slot)
			}
		}
		if f.maxInFlight > 2 {
			t.Errorf("%d calls in flight at once, max_in_flight is 2", f.maxInFlight)
		}
	})
}

// TestBatchAmbiguous: a batch whose answer was lost after it acted, and
// one lost before it acted: every slot is looked up before anything is
// sent again; the first batch's devices are adopted (no second create),
// the second batch's slots are created once each, alone. 0 duplicates.
func TestBatchAmbiguous(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newBatchFake()
		f.listLag = 2 * time.Second
		f.batchFaults = []fault{ambCreated, ambAbsent}
		ro := rollout()
		ro.CreateBatch = 5
		changes := creates(10, "ams1")
		var ev events
		res, err := Apply(t.Context(), f, mkPlan(ro, changes...), Options{OnEvent: ev.add})
		if err != nil || res.Created != 10 {
			t.Fatalf("Created %d, err %v", res.Created, err)
		}
		checkOnePerSlot(t, f, changes)
		b := f.batchLog()
		if len(b) != 2 {
			t.Fatalf("batches %v, want 2", b)
		}
		for _, s := range b[0] {
			if ops := f.ops(s); len(ops) != 0 {
				t.Errorf("slot %s of the batch that acted: calls %v, want none after the batch", s, ops)
			}
		}
		for _, s := range b[1] {
			if ops := f.ops(s); !slices.Equal(ops, []string{"create"}) {
				t.Errorf("slot %s of the batch that did not act: calls %v, want one create", s, ops)
			}
			if _, ok := ev.first(Retrying, s); !ok {
				t.Errorf("slot %s was created again without a lookup event", s)
			}
		}
	})
}

// TestBatchPartial: one batch, per-entry outcomes: created, ambiguous and
// made, ambiguous and not made, refused. Each entry is resolved on its own:
// the refused one is created alone at once (no lookup), the ambiguous ones
// only after their slot was looked up.
func TestBatchPartial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newBatchFake()
		ro := rollout()
		ro.CreateBatch = 10
		changes := creates(4, "ams1")
		made, absent, refusedSlot := changes[1].Slot(), changes[2].Slot(), changes[3].Slot()
		f.createFaults[made] = []fault{ambCreated}
		f.createFaults[absent] = []fault{ambAbsent}
		f.createFaults[refusedSlot] = []fault{refused}
		var ev events
		res, err := Apply(t.Context(), f, mkPlan(ro, changes...), Options{OnEvent: ev.add})
		if err != nil || res.Created != 4 {
			t.Fatalf("Created %d, err %v", res.Created, err)
		}
		checkOnePerSlot(t, f, changes)
		want := map[string][]string{changes[0].Slot(): nil, made: nil, absent: {"create"}, refusedSlot: {"create"}}
		for s, w := range want {
			if ops := f.ops(s); !slices.Equal(ops, w) {
				t.Errorf("slot %s: calls after the batch %v, want %v", s, ops, w)
			}
		}
		if _, ok := ev.first(Retrying, refusedSlot); ok {
			t.Errorf("the refused entry was looked up; it should be created alone at once")
		}
		if e, ok := ev.first(Info, refusedSlot); !ok || !strings.Contains(e.Message, "refused") {
			t.Errorf("no info event says the refused entry is created alone: %+v", e)
		}
	})
}

// TestBatchRefusedFallsBack: a 422 for the whole batch sends every slot
// alone; the one slot the service refuses fails with an error naming it,
// and everything else is created.
func TestBatchRefusedFallsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newBatchFake()
		f.batchFaults = []fault{refused}
		ro := rollout()
		ro.CreateBatch, ro.MaxFailures = 10, 1
		changes := creates(3, "ams1")
		bad := changes[1].Slot()
		f.createFaults[bad] = []fault{refused}
		res, err := Apply(t.Context(), f, mkPlan(ro, changes...), Options{})
		if res.Created != 2 || len(res.Failed) != 1 || res.Failed[0].Slot != bad {
			t.Fatalf("result %+v, want 2 created and %s failed", res, bad)
		}
		if err == nil || !strings.Contains(err.Error(), "slot "+bad) || !strings.Contains(err.Error(), "422") {
			t.Errorf("error %v, want one naming slot %s and the 422", err, bad)
		}
		for _, c := range changes {
			if ops := f.ops(c.Slot()); !slices.Equal(ops, []string{"create"}) {
				t.Errorf("slot %s: calls %v, want one create after the refused batch", c.Slot(), ops)
			}
		}
	})
}

// TestBatchStoppedBeforeSent: Ctrl-C before the batch could be sent (the
// call limit is held by another batch) leaves its entries not done, with
// nothing created for them.
func TestBatchStoppedBeforeSent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newBatchFake()
		f.callDelay = 10 * time.Second
		ro := rollout()
		ro.CreateBatch, ro.MaxInFlight = 2, 1
		changes := creates(4, "ams1")
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		res, err := Apply(ctx, f, mkPlan(ro, changes...), Options{Wait: WaitNone, QuietSince: quiet()}) // no list-lag fence: the stop must find one batch sent
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want Canceled", err)
		}
		if res.Created != 2 || len(res.NotDone) != 2 || len(f.batchLog()) != 1 {
			t.Errorf("Created %d, not done %d, batches %v; want 2, 2 and one batch", res.Created, len(res.NotDone), f.batchLog())
		}
	})
}

// TestBatchReplace: replacements' new devices are batched too, and each
// old device is deleted only once its new one is ready.
func TestBatchReplace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newBatchFake()
		ro := rollout()
		ro.CreateBatch = 10
		var changes []planner.Change
		for i := 1; i <= 3; i++ {
			l := f.seed(slotName("ams1", i), "oldrev000000")
			changes = append(changes, liveChange(planner.Replace, l, ""))
		}
		res, err := Apply(t.Context(), f, mkPlan(ro, changes...), Options{})
		if err != nil || res.Replaced != 3 {
			t.Fatalf("Replaced %d, err %v", res.Replaced, err)
		}
		if b := f.batchLog(); len(b) != 1 || len(b[0]) != 3 {
			t.Errorf("batches %v, want one of 3", b)
		}
		checkOnePerSlot(t, f, changes)
	})
}

// TestBatchCanaryAlone: the canary's new device goes out in a batch of its
// own and is ready before the rest of the wave is batched; recreate
// rebuilds are batched like replacements.
func TestBatchCanaryAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newBatchFake()
		ro := rollout()
		ro.CreateBatch, ro.Canary = 10, 1
		var changes []planner.Change
		for i := 1; i <= 4; i++ {
			l := f.seed(slotName("ams1", i), "oldrev000000")
			changes = append(changes, liveChange(planner.Rebuild, l, string(spec.StrategyRecreate)))
		}
		res, err := Apply(t.Context(), f, mkPlan(ro, changes...), Options{})
		if err != nil || res.Rebuilt != 4 {
			t.Fatalf("Rebuilt %d, err %v", res.Rebuilt, err)
		}
		b := f.batchLog()
		if len(b) != 2 || !slices.Equal(b[0], []string{changes[0].Slot()}) || len(b[1]) != 3 {
			t.Fatalf("batches %v, want the canary alone, then the other 3", b)
		}
		canary := f.liveBySlot()[changes[0].Slot()][0]
		var second time.Time
		for _, c := range f.log() {
			if c.op == "batch" {
				second = c.at
			}
		}
		// Ready with --wait active: the canary's state turned active.
		if active := f.dev(canary).states[1].at; !second.After(active) {
			t.Errorf("second batch at %v, canary active at %v: want it after", second, active)
		}
	})
}
