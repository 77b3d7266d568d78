package executor

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// snapshot is one fleet listing.
type snapshot struct {
	// seq orders the listing against calls: a snapshot sees the effect of
	// every call that returned before seq was taken (see watcher.seq).
	seq   uint64
	start time.Time
	byID  map[string]planner.Live
	// bySlot holds the devices of each slot that are not being deleted.
	bySlot map[string][]planner.Live
}

// watcher is the one goroutine that lists the fleet while anybody waits,
// at most once per interval, and fans each listing out to every waiter:
// waiting for N devices costs one listing per interval, not N requests.
type watcher struct {
	cloud Cloud
	lim   *rate.Limiter
	emit  func(Event)
	// outage is how long listings may fail in a row before giveUp is
	// called with the last error (0 = forever); see Options.MaxListOutage.
	outage time.Duration
	giveUp func(error)
	// seq is a logical clock shared by listings and callers. A caller that
	// loads it after a call returned and asks for a snapshot with a larger
	// seq gets a listing that began after the call returned. Wall-clock
	// times would not do: under a fake clock they are often equal.
	seq atomic.Uint64

	mu      sync.Mutex
	demand  int           // waiters blocked in next
	cur     *snapshot     // newest successful listing
	changed chan struct{} // closed and replaced when cur changes
	wake    chan struct{} // a waiter wants a listing
}

func newWatcher(cloud Cloud, interval time.Duration, emit func(Event)) *watcher {
	return &watcher{
		cloud: cloud,
		// Burst 1: a listing starts at once when the first waiter comes, and
		// never sooner than interval after the previous one.
		lim:     rate.NewLimiter(rate.Every(interval), 1),
		emit:    emit,
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
}

// now returns the current value of the logical clock. A snapshot from
// next(ctx, w.now()) began after this call.
func (w *watcher) now() uint64 { return w.seq.Load() }

func (w *watcher) wanted() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.demand > 0
}

// run lists the fleet while there is demand, until ctx ends.
func (w *watcher) run(ctx context.Context) {
	var failingSince time.Time // start of the current run of failed listings
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		for w.wanted() {
			if err := w.lim.Wait(ctx); err != nil {
				return
			}
			seq := w.seq.Add(1)
			start := time.Now()
			lives, err := w.cloud.List(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				// The client already retried; the next poll tries again,
				// until the API has been unreachable for too long: then
				// nobody could ever be told their device is ready.
				w.emit(Event{Kind: Info, Wave: -1, Message: "list devices: " + err.Error(), Err: err})
				if failingSince.IsZero() {
					failingSince = start
				}
				if down := time.Since(failingSince); w.outage > 0 && down >= w.outage && w.giveUp != nil {
					w.giveUp(fmt.Errorf("the fleet could not be listed for %s: %w", down.Round(time.Second), err))
					return
				}
				continue
			}
			failingSince = time.Time{}
			w.publish(newSnapshot(seq, start, lives))
		}
	}
}

func newSnapshot(seq uint64, start time.Time, lives []planner.Live) *snapshot {
	s := &snapshot{seq: seq, start: start, byID: make(map[string]planner.Live, len(lives)),
		bySlot: make(map[string][]planner.Live, len(lives))}
	for _, l := range lives {
		s.byID[l.ID] = l
		if slot := l.Slot(); slot != "" && !planner.Ignored(l.State) {
			s.bySlot[slot] = append(s.bySlot[slot], l)
		}
	}
	return s
}

func (w *watcher) publish(s *snapshot) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cur = s
	close(w.changed)
	w.changed = make(chan struct{})
}

// next returns the first successful listing with seq > after, waiting for
// one if needed. It fails only when ctx ends.
func (w *watcher) next(ctx context.Context, after uint64) (*snapshot, error) {
	w.mu.Lock()
	w.demand++
	defer func() {
		w.mu.Lock()
		w.demand--
		w.mu.Unlock()
	}()
	for {
		if s := w.cur; s != nil && s.seq > after {
			w.mu.Unlock()
			return s, nil
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default: // a wake-up is already pending
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		w.mu.Lock()
	}
}
