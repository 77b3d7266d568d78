package executor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// wave is the work of one wave.
type wave struct {
	index   int
	changes []int // plan indexes, in plan order
	// budget holds max_unavailable units: one per device of the wave taken
	// out of service by this apply (see docs/executor.md).
	budget *semaphore.Weighted
	// turns hands the budget to the in-place rebuilds of the group being
	// run in plan order (see turns).
	turns *turns
	// sched is cancelled on Ctrl-C, timeout or halt: no new change starts.
	sched context.Context
	halt  context.CancelFunc

	failures int // guarded by the run's mu
}

// groupWaves splits the plan into its waves, in run order. A change whose
// wave is unknown (negative) runs in a trailing wave of its own. No-op
// changes (if a plan lists them) only size their wave's budget.
func groupWaves(plan planner.Plan) []*wave {
	byIndex := map[int]*wave{}
	active := map[int]bool{}
	for i, c := range plan.Changes {
		w := c.Wave
		if w < 0 {
			w = max(len(plan.Rollout.Waves), maxWave(plan)+1)
		}
		if byIndex[w] == nil {
			byIndex[w] = &wave{index: w}
		}
		byIndex[w].changes = append(byIndex[w].changes, i)
		if c.Action != planner.NoOp {
			active[w] = true
		}
	}
	waves := make([]*wave, 0, len(byIndex))
	for i, w := range byIndex {
		if active[i] { // a wave of no-ops has nothing to run
			waves = append(waves, w)
		}
	}
	sort.Slice(waves, func(i, j int) bool { return waves[i].index < waves[j].index })
	return waves
}

func maxWave(plan planner.Plan) int {
	m := 0
	for _, c := range plan.Changes {
		m = max(m, c.Wave)
	}
	return m
}

func (r *run) runWaves(ctx context.Context) {
	for _, w := range groupWaves(r.plan) {
		if ctx.Err() != nil || r.halted() {
			r.skip(w.changes)
			continue
		}
		r.runWave(ctx, w)
	}
}

func (r *run) halted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.res.Halted
}

// skip records changes as not done.
func (r *run) skip(idx []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, i := range idx {
		r.notDone[i] = true
	}
}

// runWave runs one wave: its canaries (first wave with rebuilds only),
// then its creates, rebuilds, replacements and updates together, then,
// once those devices are ready, its deletes — so a wave never gives up a
// device before the devices it gains are serving. Only the deletes that
// free a reservation a create of the wave waits for go first.
func (r *run) runWave(ctx context.Context, w *wave) {
	zones := ""
	if w.index < len(r.plan.Rollout.Waves) {
		zones = strings.Join(r.plan.Rollout.Waves[w.index], ",")
	}
	r.emit(Event{Kind: WaveStarted, Wave: w.index, Message: zones})

	var freeing, canary, main, deletes []int
	frees := awaited(r.plan, w.changes) // reservations.go
	slots := map[string]bool{}
	for _, i := range w.changes {
		c := &r.plan.Changes[i]
		switch {
		case c.Action == planner.NoOp:
			// Not run, but the device is part of the wave: it counts in n
			// for a percentage max_unavailable.
		case c.Action == planner.Delete && frees[c.DeviceID()]:
			freeing = append(freeing, i)
			continue
		case c.Action == planner.Delete:
			deletes = append(deletes, i)
			continue
		case r.canaryLeft > 0 && (c.Action == planner.Rebuild || c.Action == planner.Replace):
			canary = append(canary, i)
			r.canaryLeft--
		default:
			main = append(main, i)
		}
		slots[c.Slot()] = true
	}
	if len(canary) > 0 {
		// Canaries are taken from the first wave that has rebuilds or
		// replacements; later waves get none.
		r.canaryLeft = 0
	}
	w.budget = semaphore.NewWeighted(int64(r.plan.Rollout.MaxUnavailable.Of(len(slots))))
	w.sched, w.halt = context.WithCancel(ctx)
	defer w.halt()

	if len(canary) > 0 {
		r.emit(Event{Kind: Info, Wave: w.index, Message: fmt.Sprintf("canary: %d device(s) first", len(canary))})
	}
	for _, group := range [][]int{freeing, canary, main, deletes} {
		if w.sched.Err() != nil {
			r.skip(group)
			continue
		}
		w.turns = newTurns(r.plan, group)
		b := r.startBatches(w, group) // batch.go; nil when off
		var g errgroup.Group          // unbounded: waits must not hold call slots
		for _, i := range group {
			g.Go(func() error {
				defer b.leave(i)
				r.runChange(ctx, w, i)
				return nil
			})
		}
		_ = g.Wait()
	}
	if r.whole(w) {
		r.emit(Event{Kind: WaveDone, Wave: w.index})
	}
}

// whole reports whether wave w ran to its end: no halt, no change left
// undone, and none cut short (see cutShort). WaveDone says exactly that,
// and the progress view settles the wave's devices on it. It is decided
// from the changes, not from w.sched: a change that saw Ctrl-C or the
// timeout can return before the cancellation has reached w.sched, and a
// wave whose last call completed across the deadline was not stopped.
func (r *run) whole(w *wave) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.res.Halted {
		return false
	}
	for _, i := range w.changes {
		if r.notDone[i] || r.cut[&r.plan.Changes[i]] {
			return false
		}
	}
	return true
}

// cutShort records that c counts as done but a step after its calls was
// stopped by Ctrl-C or the timeout (its device's wait, or a setting
// applied once it is ready): its device exists but is not known ready.
func (r *run) cutShort(c *planner.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut[c] = true
}

// fail records a failed change and halts the rollout when the wave's
// failures exceed max_failures.
func (r *run) fail(w *wave, c *planner.Change, fd FailedDevice) {
	fd.Hostname, fd.Slot = c.Hostname(), c.Slot()
	if fd.ID == "" {
		fd.ID = c.DeviceID()
	}
	r.emit(Event{Kind: ChangeFailed, Wave: c.Wave, Action: c.Action, Slot: c.Slot(), Hostname: c.Hostname(),
		DeviceID: fd.ID, Message: fd.LastEvent})

	r.mu.Lock()
	w.failures++ // under r.mu: the count and the reason change together
	n := w.failures
	r.res.Failed = append(r.res.Failed, fd)
	halt := n > r.plan.Rollout.MaxFailures && !r.res.Halted
	if halt {
		r.res.Halted, r.haltWave = true, w
	}
	if r.haltWave == w {
		// Devices already in flight may fail after the halt: the reason
		// is rewritten so its count agrees with the list of failures.
		r.res.HaltReason = r.haltReason(w, n, len(r.res.Failed))
	}
	r.mu.Unlock()
	if halt {
		w.halt()
		// Changes in flight may still fail: the progress line gives no
		// count that the summary's final one would contradict.
		r.emit(Event{Kind: Halted, Wave: w.index, Message: fmt.Sprintf(
			"wave %d%s: more than max_failures %d device(s) failed; no further change starts, those in flight finish",
			w.index+1, r.waveZones(w), r.plan.Rollout.MaxFailures)})
	}
}

// waveZones is " (zone, zone)" for wave w, "" when the plan has no waves.
func (r *run) waveZones(w *wave) string {
	if w.index < len(r.plan.Rollout.Waves) {
		return " (" + strings.Join(r.plan.Rollout.Waves[w.index], ", ") + ")"
	}
	return ""
}

// haltReason says why the rollout halted at wave w with n failures in it
// (total in the whole run). Waves count from 1 as in the plan text and
// the progress lines. How to resume is the CLI's to say: it knows the
// command line.
func (r *run) haltReason(w *wave, n, total int) string {
	earlier := ""
	if total > n {
		earlier = fmt.Sprintf(" (and %d in earlier waves)", total-n)
	}
	return fmt.Sprintf("wave %d%s: %d failed device(s) exceed max_failures %d%s; "+
		"changes not yet started and every later wave were left untouched",
		w.index+1, r.waveZones(w), n, r.plan.Rollout.MaxFailures, earlier)
}

// turns makes a wave's in-place rebuilds take their max_unavailable units in
// plan (slot) order, so a rollout walks a wave's devices in the order the
// plan shows. semaphore.Weighted serves waiters first come, first served;
// letting each rebuild queue only once the one before it was served turns
// "first come" into plan order.
type turns struct {
	mu   sync.Mutex
	wait map[*planner.Change]chan struct{} // closed when the change may queue
	next map[*planner.Change]chan struct{} // the following change's channel
}

// newTurns orders the in-place rebuilds among the plan indexes idx.
func newTurns(plan planner.Plan, idx []int) *turns {
	t := &turns{wait: map[*planner.Change]chan struct{}{}, next: map[*planner.Change]chan struct{}{}}
	var prev *planner.Change
	for _, i := range idx {
		c := &plan.Changes[i]
		if c.Action != planner.Rebuild || !strategy(plan, c).InPlace() {
			continue
		}
		ch := make(chan struct{})
		if prev == nil {
			close(ch)
		} else {
			t.next[prev] = ch
		}
		t.wait[c] = ch
		prev = c
	}
	return t
}

// await blocks until c may queue for the budget (at once for a change
// that is not an in-place rebuild).
func (t *turns) await(ctx context.Context, c *planner.Change) error {
	t.mu.Lock()
	ch := t.wait[c]
	t.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pass lets the change after c queue. Every change awaited must pass,
// whether it got its unit or gave up, or the ones after it wait forever.
func (t *turns) pass(c *planner.Change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch := t.next[c]; ch != nil {
		close(ch)
		delete(t.next, c)
	}
}
