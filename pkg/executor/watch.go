package executor

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// snapshot is one fleet listing.
type snapshot struct {
	// seq orders the listing against calls: a snapshot sees the effect of
	// every call that returned before seq was taken (see watcher.seq).
	seq   uint64
	start time.Time
	end   time.Time // when the listing's answer was in
	byID  map[string]planner.Live
	// bySlot holds the devices of each slot that are not being deleted.
	bySlot map[string][]planner.Live
}

// watcher is the one goroutine that lists the fleet while anybody waits,
// and fans each listing out to every waiter: waiting for N devices costs
// one listing per poll, not N requests. How often it polls:
//
//   - Never before a device could be ready. Each device waited for is
//     registered (waiting); from the first ones it learns T, the shortest
//     time a wait took (from the listing before the one that showed the
//     device ready), and while every waiter is a registered device that
//     began less than T ago, it does not list at all.
//   - While other calls use the request budget, listings take at most
//     pollShare (1 %) of it: a listing of N devices costs ceil(N/1000) requests,
//     so at R requests/s polls are at least pages/(pollShare·R) apart, and
//     never closer than interval.
//   - When the budget is idle (the tail of a wave: every create sent),
//     one poll is aimed at when the youngest waiter should be ready, by
//     the fastest wait seen yet (upper): on a cloud whose devices take
//     about the same time, that one listing sees the last of them. Until
//     then polls only report progress and come once per interval; from
//     then on every waiter is overdue and they come every tailGap (or as
//     often as a fifth of the budget allows), so the last device is seen
//     soon after it is ready. Where no wait has ended yet (no aim), the
//     tail polls every tailGap throughout.
//
// The listing is the lighter ListStates when the Cloud offers it.
type watcher struct {
	cloud    Cloud
	interval time.Duration
	emit     func(Event)
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
	prev    *snapshot     // the one before cur
	changed chan struct{} // closed and replaced when cur changes
	wake    chan struct{} // a waiter wants a listing
	// waits holds the registered waits in the order they began (ended ones
	// are dropped from the front lazily), live how many have not ended;
	// learnt is T (0 until a wait ended after a listing that did not yet
	// end it).
	waits  []*waitReg
	live   int
	learnt time.Duration
	// upper is the shortest time from a wait's start to the end of a
	// listing that ended it (an upper bound of T where devices take the
	// same time); aimed is the waiter the last aimed poll was for.
	upper time.Duration
	aimed *waitReg
	// lastWait is when the last device wait was registered.
	lastWait time.Time
	// pages is what the last listing cost in requests; starts holds when
	// the listings of the last second began.
	pages  int
	starts []time.Time
}

// waitReg is one registered wait.
type waitReg struct {
	since time.Time
	ended bool
}

// Polling shares (see watcher).
const (
	// pollShare is the most of the request budget listings take while
	// other calls need it: every listing request then is a create less.
	// 10,000 creates within 1.05× of their request bound leave room for
	// about 2 %, 300 creates at R = 5 within 1.10× for less than that
	// once planning and the lease took theirs; a listing while calls go
	// out only reports progress sooner (the tail polls fast), so 1 %.
	pollShare = 0.01
	// tailShare is the most they take when nothing else does: the tail
	// polls report progress, while the aimed poll (see aim) sees the last
	// device; at 10,000 devices (10 pages) and R = 100 they come every
	// 0.5 s.
	tailShare = 0.2
	// tailGap is the shortest gap between polls.
	tailGap = 200 * time.Millisecond
	// busyShare: other calls using more than this share of the pace mean
	// the budget is busy.
	busyShare = 0.1
)

// stateLister is a Cloud that can list the fleet with only what waiting
// reads (id, state, tags, user state): a fraction of a full listing.
type stateLister interface {
	ListStates(ctx context.Context) ([]planner.Live, error)
}

// budgeter is a Cloud that says its request pace and how much of it is in
// use (requests/s).
type budgeter interface {
	Budget() (pace, used float64)
}

func newWatcher(cloud Cloud, interval time.Duration, emit func(Event)) *watcher {
	return &watcher{
		cloud:    cloud,
		interval: interval,
		emit:     emit,
		changed:  make(chan struct{}),
		wake:     make(chan struct{}, 1),
	}
}

// waiting registers a wait for one device that begins now; the returned
// func ends it. From the first waits the watcher learns how long a device
// takes at least, and lists nothing while every waiter is younger.
func (w *watcher) waiting() func() {
	w.mu.Lock()
	reg := &waitReg{since: time.Now()}
	w.lastWait = reg.since
	w.waits = append(w.waits, reg)
	w.live++
	w.mu.Unlock()
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		reg.ended = true
		w.live--
		for len(w.waits) > 0 && w.waits[0].ended {
			w.waits[0] = nil
			w.waits = w.waits[1:]
		}
		// The wait ended with cur (or later); the listing before it had
		// not ended it, so T is at least prev.start − since.
		if p := w.prev; p != nil && p.start.After(reg.since) {
			if t := p.start.Sub(reg.since); w.learnt == 0 || t < w.learnt {
				w.learnt = t
			}
		}
		if c := w.cur; c != nil && c.end.After(reg.since) {
			if t := c.end.Sub(reg.since); w.upper == 0 || t < w.upper {
				w.upper = t
			}
		}
	}
}

// aimSlack is how much later than predicted the aimed poll goes, for the
// jitter of when a create's answer arrived against when the device began.
const aimSlack = 10 * time.Millisecond

// aim returns when the youngest waiter should be ready (zero if no
// waiter is a registered device wait, nothing is learnt yet, or a poll was
// already aimed at it). w.mu is held.
func (w *watcher) aim() (time.Time, *waitReg) {
	t, r := w.youngest()
	if r == nil || r == w.aimed {
		return time.Time{}, nil
	}
	return t, r
}

// youngest returns the youngest live waiter and when it should be ready,
// by the fastest wait seen (nil if any waiter is not a registered device
// wait, or nothing is learnt yet). w.mu is held.
func (w *watcher) youngest() (time.Time, *waitReg) {
	if w.upper == 0 || w.live == 0 || w.demand > w.live {
		return time.Time{}, nil
	}
	for i := len(w.waits) - 1; i >= 0; i-- {
		if r := w.waits[i]; !r.ended {
			return r.since.Add(w.upper + aimSlack), r
		}
	}
	return time.Time{}, nil
}

// earliest returns when the next listing may be useful: at once if any
// waiter is not a registered device wait, or a registered wait is older
// than T; else when the oldest becomes so. w.mu is held.
func (w *watcher) earliest(now time.Time) time.Time {
	if w.learnt == 0 || w.demand > w.live || w.live == 0 {
		return now
	}
	// Waits begin in order: the front one (never an ended one) is oldest.
	return w.waits[0].since.Add(w.learnt)
}

// gap returns how long after the previous listing began the next may,
// and whether the budget is idle (no other calls use it).
func (w *watcher) gap() (time.Duration, bool) {
	b, ok := w.cloud.(budgeter)
	if !ok {
		return w.interval, false
	}
	pace, used := b.Budget()
	if math.IsInf(pace, 1) || pace <= 0 {
		return w.interval, false
	}
	w.mu.Lock()
	pages := max(w.pages, 1)
	cut := time.Now().Add(-time.Second)
	for len(w.starts) > 0 && !w.starts[0].After(cut) {
		w.starts = w.starts[1:]
	}
	// Our own listings are part of used; the rest is everybody else's.
	own := float64(pages * len(w.starts))
	ahead := w.aimAhead(time.Now())
	w.mu.Unlock()
	if used-own > busyShare*pace {
		return max(w.interval, secs(float64(pages)/(pollShare*pace))), false
	}
	g := min(max(tailGap, secs(float64(pages)/(tailShare*pace))), w.interval)
	if ahead {
		// Before the aimed poll a tail poll only reports progress, and
		// lists the whole fleet for it: one per interval, as while
		// waiting at all. Polling every tailGap there was most of the
		// client's listing CPU on a fast server (25 listings of 1,000
		// devices in the 5 s tail of 1,000 creates at R = 50).
		g = max(g, w.interval)
	}
	return g, true
}

// aimAhead reports whether the poll aimed at the youngest waiter is still
// to come: every waiter is a registered device wait, the fastest wait is
// known, and the youngest began less than that (plus aimSlack) ago. From
// then on every waiter is overdue, and tail polls come every tailGap.
// w.mu is held.
func (w *watcher) aimAhead(now time.Time) bool {
	t, r := w.youngest()
	return r != nil && now.Before(t)
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

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
	// notBefore is the previous listing's start plus the gap judged right
	// after it: judged once, or the wake-ups of waiters would re-judge it
	// until a quiet moment let a listing through. The one exception is the
	// budget turning idle (the last call of a wave went out): a gap judged
	// busy — ten seconds at R = 5 — would then hide the last devices for
	// that long after they are ready, so while it lasts the gap is judged
	// again every tailGap and may only shrink, to the idle gap counted
	// from the previous listing, once the budget has stayed idle for a
	// tailGap (a single look may fall between two calls).
	var notBefore, lastStart, idleFrom time.Time
	// quietFrom is when the budget was last seen turning idle (zero while
	// busy); the aimed poll waits until it has been idle a tailGap.
	var quietFrom time.Time
	list := w.cloud.List
	if sl, ok := w.cloud.(stateLister); ok {
		list = sl.ListStates
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		for w.wanted() {
			now := time.Now()
			w.mu.Lock()
			at := w.earliest(now)
			w.mu.Unlock()
			g, tail := w.gap()
			switch {
			case !tail:
				quietFrom = time.Time{}
			case quietFrom.IsZero():
				quietFrom = now
			}
			if notBefore.Sub(now) > tailGap {
				switch idle := lastStart.Add(g); {
				case !idle.Before(notBefore):
					idleFrom = time.Time{}
				case idleFrom.IsZero():
					idleFrom = now
				case now.Sub(idleFrom) >= tailGap:
					notBefore = latest(idle, now)
				}
			}
			at = latest(at, notBefore)
			var aimed *waitReg
			w.mu.Lock()
			// No device wait began for a tailGap: no create is going out,
			// whatever else uses the budget for a moment. The lease's
			// keep-alive (a read and a write) is a tenth of the pace at
			// R = 20 and made the budget look busy for a second, which
			// held the aimed poll back until it passed (the last device
			// seen 0.8 s late).
			noWaits := w.live > 0 && now.Sub(w.lastWait) >= tailGap
			w.mu.Unlock()
			if tail || noWaits {
				// The tail: one poll aimed at the youngest waiter, sooner
				// than the next tailGap poll, once the budget has been idle
				// for a tailGap (a single look may fall between calls) or
				// no wait began for as long.
				w.mu.Lock()
				t, r := w.aim()
				if r != nil && t.Before(at) && !t.Before(w.earliest(now)) && (noWaits || now.Sub(quietFrom) >= tailGap) {
					at, aimed = latest(t, now), r
				}
				w.mu.Unlock()
			}
			if d := at.Sub(now); d > 0 {
				if at.Equal(notBefore) || aimed != nil {
					// Re-judge a long busy gap (above), and whether the
					// budget is still idle for the aimed poll, every tailGap.
					d = min(d, tailGap)
				}
				// Sleep, but re-decide when a new waiter comes: it may
				// be one that needs a listing at once (a lookup).
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-w.wake:
					t.Stop()
					continue
				case <-t.C:
					continue
				}
			}
			seq := w.seq.Add(1)
			start := time.Now()
			w.mu.Lock()
			w.starts = append(w.starts, start)
			if aimed != nil {
				w.aimed = aimed
			}
			w.mu.Unlock()
			lives, err := list(ctx)
			lastStart, idleFrom = start, time.Time{}
			g, _ = w.gap()
			notBefore = start.Add(g)
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
			snap := newSnapshot(seq, start, lives)
			snap.end = time.Now()
			w.publish(snap)
		}
	}
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
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
	w.prev, w.cur = w.cur, s
	w.pages = max(1, (len(s.byID)+999)/1000)
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
