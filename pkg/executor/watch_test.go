package executor

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// budgetCloud is a fakeCloud behind a client-side pace of rate requests/s,
// that reports its use like packet.Client.Budget and lists through
// ListStates.
type budgetCloud struct {
	*fakeCloud
	rate float64

	mu     sync.Mutex
	starts []time.Time // every call and listing
	lists  []time.Time
	states int // ListStates calls
}

func (b *budgetCloud) note(list bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.starts = append(b.starts, now)
	if list {
		b.lists = append(b.lists, now)
	}
}

func (b *budgetCloud) Budget() (float64, float64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, cut := 0, time.Now().Add(-time.Second)
	for _, s := range b.starts {
		if s.After(cut) {
			n++
		}
	}
	return b.rate, float64(n)
}

func (b *budgetCloud) Create(ctx context.Context, d spec.Device) (planner.Live, error) {
	b.note(false)
	return b.fakeCloud.Create(ctx, d)
}

func (b *budgetCloud) ListStates(ctx context.Context) ([]planner.Live, error) {
	b.note(true)
	b.mu.Lock()
	b.states++
	b.mu.Unlock()
	return b.fakeCloud.List(ctx)
}

// TestWaitingBudget applies 60 creates sent at 2/s (a server pace of
// 10/s) that provision in 5 s. Waiting must poll through ListStates, not
// before the first devices could be ready, at most pollShare (1 %) of the pace
// while creates are sent, and quickly once they are all sent, so the last
// device is seen within a tail poll of being ready.
func TestWaitingBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.provision, fc.callDelay = 5*time.Second, time.Second
		bc := &budgetCloud{fakeCloud: fc, rate: 10}
		var changes []planner.Change
		for i := 1; i <= 60; i++ {
			changes = append(changes, createChange(slotName("ams1", i)))
		}
		var ev events
		start := time.Now()
		// QuietSince long ago: no earlier run to fence off, so only waiting lists.
		res, err := Apply(t.Context(), bc, mkPlan(rollout(), changes...), Options{Parallelism: 2, OnEvent: ev.add, QuietSince: time.Unix(0, 0)})
		if err != nil || res.Created != 60 {
			t.Fatalf("Created %d, err %v", res.Created, err)
		}
		if fc.lists != bc.states || bc.states != len(bc.lists) {
			t.Errorf("%d full listings and %d ListStates, want only ListStates", fc.lists, bc.states)
		}
		log := fc.log()
		lastCreate := log[len(log)-1].at
		var busy, tail int
		for _, l := range bc.lists {
			if l.Before(start.Add(time.Second)) {
				t.Errorf("listed at %v, before the first create returned", l.Sub(start))
			}
			if l.Before(lastCreate) {
				busy++
			} else {
				tail++
			}
		}
		span := lastCreate.Sub(start).Seconds()
		// While creates go out: the first device's T learnt at one poll a
		// second (5), then one listing per pages/(pollShare·rate) = 10 s.
		if maxBusy := 5 + int(span/10) + 1; busy > maxBusy {
			t.Errorf("%d listings in %.0fs of creates, want <= %d", busy, span, maxBusy)
		}
		// The last device: ready 5 s after its create, seen within a
		// tail poll (200 ms) of that.
		var lastReady time.Time
		for _, e := range ev.all {
			if e.Kind == DeviceReady && e.Time.After(lastReady) {
				lastReady = e.Time
			}
		}
		if late := lastReady.Sub(lastCreate.Add(fc.callDelay + fc.provision)); late > 250*time.Millisecond {
			t.Errorf("last device seen %v after it was ready, want <= 250ms", late)
		}
		t.Logf("%d listings while creating (%.0fs), %d in the tail", busy, span, tail)
	})
}

// TestWaitingTailAfterBusyGap: at a small pace (5/s) a poll while creates
// go out is ten seconds from the next (pollShare), longer than a device
// provisions. Once the last create is sent the budget is idle, and the
// last device must still be seen soon after it is ready, not when that
// busy gap ends.
func TestWaitingTailAfterBusyGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.provision, fc.callDelay = 5*time.Second, 250*time.Millisecond
		bc := &budgetCloud{fakeCloud: fc, rate: 5}
		lastCreate, lastReady := applyCreates(t, bc, 80, 1)
		// Idle is judged over a second of use and must last a tail poll;
		// then polls come every tailGap.
		if late := lastReady.Sub(lastCreate.Add(fc.callDelay + fc.provision)); late > 500*time.Millisecond {
			t.Errorf("last device seen %v after it was ready, want <= 500ms", late)
		}
		busy := 0
		for _, l := range bc.lists {
			if l.Before(lastCreate) {
				busy++
			}
		}
		// 20 s of creates: T learnt at one poll a second, then one listing
		// per 1/(pollShare·5) = 20 s.
		if busy > 5+1+1 {
			t.Errorf("%d listings while creating, want <= 7", busy)
		}
		t.Logf("%d listings while creating, last device seen %v after ready", busy, lastReady.Sub(lastCreate.Add(fc.callDelay+fc.provision)))
	})
}

// TestWaitingAimsAtTheLastDevice: devices that all take the same time
// (3.1 s, off the tail polls' 200 ms grid) are seen ready by the listing
// aimed at the youngest waiter: the fastest wait seen (50 ms above T with
// these 12 devices) plus aimSlack after its start, rather than at the next
// tail poll (400 ms late here without the aim).
func TestWaitingAimsAtTheLastDevice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.provision, fc.boot, fc.callDelay = 3100*time.Millisecond, 0, 330*time.Millisecond
		bc := &budgetCloud{fakeCloud: fc, rate: 10}
		lastCreate, lastReady := applyCreates(t, bc, 12, 2)
		late := lastReady.Sub(lastCreate.Add(fc.callDelay + fc.provision))
		if late < 0 || late > 100*time.Millisecond {
			t.Errorf("last device seen %v after it was ready, want <= 100ms", late)
		}
		t.Logf("last device seen %v after ready; %d listings", late, len(bc.lists))
	})
}

// applyCreates applies n creates through bc at parallelism par (no earlier
// run to fence off, so only waiting lists) and returns when the last
// create was sent and when the last device was reported ready.
func applyCreates(t *testing.T, bc *budgetCloud, n, par int) (lastCreate, lastReady time.Time) {
	t.Helper()
	var changes []planner.Change
	for i := 1; i <= n; i++ {
		changes = append(changes, createChange(slotName("ams1", i)))
	}
	var ev events
	res, err := Apply(t.Context(), bc, mkPlan(rollout(), changes...), Options{Parallelism: par, OnEvent: ev.add, QuietSince: time.Unix(0, 0)})
	if err != nil || res.Created != n {
		t.Fatalf("Created %d, err %v", res.Created, err)
	}
	log := bc.fakeCloud.log()
	for _, e := range ev.all {
		if e.Kind == DeviceReady && e.Time.After(lastReady) {
			lastReady = e.Time
		}
	}
	return log[len(log)-1].at, lastReady
}

// TestWaitingTailPollsOncePerIntervalUntilTheAim: 200 creates over 10 s
// at a fast pace (100/s) that provision in 3 s. Once every create is sent
// the budget is idle, but until the poll aimed at the youngest waiter a
// tail poll only reports progress: one per interval (1 s), not one every
// tailGap (200 ms: 12 listings of the whole fleet in the 3 s tail before
// the change). The aimed poll still sees the last device at once.
func TestWaitingTailPollsOncePerIntervalUntilTheAim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newFake()
		fc.provision, fc.boot, fc.callDelay = 3*time.Second, 0, 100*time.Millisecond
		bc := &budgetCloud{fakeCloud: fc, rate: 100}
		lastCreate, lastReady := applyCreates(t, bc, 200, 2)
		ready := lastCreate.Add(fc.callDelay + fc.provision)
		tail := 0
		for _, l := range bc.lists {
			if l.After(lastCreate) && l.Before(ready) {
				tail++
			}
		}
		// 3 s of tail at one poll a second, plus the aimed poll and one
		// while the budget is still judged busy.
		if tail > 3+1+1 {
			t.Errorf("%d listings in the 3 s tail before the last device is ready, want <= 5", tail)
		}
		if late := lastReady.Sub(ready); late < 0 || late > 100*time.Millisecond {
			t.Errorf("last device seen %v after it was ready, want <= 100ms", late)
		}
		t.Logf("%d listings in the tail, %d in all; last device seen %v after ready", tail, len(bc.lists), lastReady.Sub(ready))
	})
}

// TestWaitingAimedPollRidesOutAStrayCall: 60 creates at the pace (20/s)
// that provision in 3 s. 300 ms before the last device is ready, three
// calls that are not creates (the lease's keep-alive and a listing) make
// the budget look busy for a second: over a tenth of the pace. No device
// wait began meanwhile, so the poll aimed at the last device still goes,
// and it is seen within 100 ms (250 ms late here when the aimed poll
// waited for the budget to look idle; 0.8 s in the bench, where the
// client's use is counted over its last whole second).
func TestWaitingAimedPollRidesOutAStrayCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 60
		fc := newFake()
		fc.provision, fc.boot, fc.callDelay = 3*time.Second, 0, 100*time.Millisecond
		bc := &budgetCloud{fakeCloud: fc, rate: 20}
		done := make(chan struct{})
		go func() {
			// Once the last create was sent: the stray calls.
			for len(fc.log()) < n {
				select {
				case <-done:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			log := fc.log()
			time.Sleep(time.Until(log[n-1].at.Add(fc.callDelay + fc.provision - 300*time.Millisecond)))
			for range 3 {
				bc.note(false)
			}
		}()
		lastCreate, lastReady := applyCreates(t, bc, n, 2)
		close(done)
		if late := lastReady.Sub(lastCreate.Add(fc.callDelay + fc.provision)); late < 0 || late > 100*time.Millisecond {
			t.Errorf("last device seen %v after it was ready, want <= 100ms", late)
		}
		t.Logf("last device seen %v after ready; %d listings", lastReady.Sub(lastCreate.Add(fc.callDelay+fc.provision)), len(bc.lists))
	})
}
