package executor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// BatchCreator is a Cloud that can also create several devices in one
// request. It is optional, and used only when the plan's
// rollout.create_batch is above 0 (see docs/executor.md).
type BatchCreator interface {
	// CreateBatch creates the devices ds in one request, once, like Create.
	// It returns one Live and one error per device, in the order of ds. An
	// error with Ambiguous() true says the device may exist (the slot is
	// looked up before it is created again); any other error says no device
	// was made for that entry (it is then created alone).
	CreateBatch(ctx context.Context, ds []spec.Device) ([]planner.Live, []error)
}

// batchResult is what one entry of a batch came to.
type batchResult struct {
	live planner.Live
	err  error
}

// batchEntry is a change waiting for its batch.
type batchEntry struct {
	index int // plan index: batches are cut in plan order
	c     *planner.Change
	done  chan batchResult // buffered: the sender never blocks
}

// batcher gathers the first creates of one group of a wave (canaries,
// the rest, see runWave) into batch requests of up to size entries. A
// batch goes out once it is full or once every create of the group has
// joined or left: the changes of a group all start together and create
// first, so nobody waits on a change that will come late.
type batcher struct {
	r     *run
	w     *wave
	bc    BatchCreator
	size  int
	mu    sync.Mutex
	await map[*planner.Change]int // creates of the group that have not joined yet → plan index
	queue []*batchEntry
}

// startBatches returns the batcher of group (nil when batching is off) and
// registers it for the group's creates.
func (r *run) startBatches(w *wave, group []int) *batcher {
	bc, ok := r.cloud.(BatchCreator)
	if !ok || r.plan.Rollout.CreateBatch <= 0 {
		return nil
	}
	b := &batcher{r: r, w: w, bc: bc, size: min(r.plan.Rollout.CreateBatch, spec.MaxCreateBatch), await: map[*planner.Change]int{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batchers == nil {
		r.batchers = map[*planner.Change]*batcher{}
	}
	for _, i := range group {
		c := &r.plan.Changes[i]
		if c.Desired != nil && createsFirst(r.plan, c) {
			b.await[c] = i
			r.batchers[c] = b
		}
	}
	return b
}

// createsFirst says whether c's first call is the create of a new device.
func createsFirst(plan planner.Plan, c *planner.Change) bool {
	switch c.Action {
	case planner.Create, planner.Replace:
		return true
	case planner.Rebuild:
		return !strategy(plan, c).InPlace()
	}
	return false
}

// leave is called when change i's goroutine ends: a create that never
// joined (it failed before its call) must not hold the others' batch back.
func (b *batcher) leave(i int) {
	if b == nil {
		return
	}
	c := &b.r.plan.Changes[i]
	b.mu.Lock()
	if _, ok := b.await[c]; !ok {
		b.mu.Unlock()
		return
	}
	delete(b.await, c)
	batch := b.cut()
	b.mu.Unlock()
	b.launch(batch)
}

// batcherOf returns the batcher c's first create joins, nil if none.
func (r *run) batcherOf(c *planner.Change) *batcher {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.batchers[c]
}

// sendCreate sends one create attempt of c: the change's first, announced
// create goes into its group's batch when batching is on; every other
// attempt is a request of its own (createOnce).
func (r *run) sendCreate(gate context.Context, c *planner.Change, first bool) (planner.Live, error) {
	b := r.batcherOf(c)
	if !first || b == nil {
		return r.createOnce(gate, c, first)
	}
	res, joined := b.join(c)
	switch {
	case !joined:
		return r.createOnce(gate, c, first)
	case res.err == nil, errors.Is(res.err, errNotSent), isAmbiguous(res.err):
		// Done, not sent, or for the slot lookup (safeCreate) to resolve.
		return res.live, res.err
	}
	// Refused: no device was made for the entry, so it is created alone,
	// and a refusal of the slot itself comes back naming it.
	r.emit(changeEvent(Info, c, "", fmt.Sprintf("the batch create was refused (%v); creating the device alone", res.err)))
	return r.createOnce(gate, c, false)
}

// join adds c to the queue and waits for its batch's answer. joined is
// false when c is not one of the batcher's creates (or joined before).
func (b *batcher) join(c *planner.Change) (res batchResult, joined bool) {
	b.mu.Lock()
	index, ok := b.await[c]
	if !ok {
		b.mu.Unlock()
		return batchResult{}, false
	}
	delete(b.await, c)
	e := &batchEntry{c: c, index: index, done: make(chan batchResult, 1)}
	b.queue = append(b.queue, e)
	batch := b.cut()
	b.mu.Unlock()
	b.launch(batch)
	return <-e.done, true
}

// cut takes the next batch off the queue when it is full, or when nobody
// else will join; nil otherwise. b.mu is held.
func (b *batcher) cut() []*batchEntry {
	if len(b.queue) == 0 || (len(b.queue) < b.size && len(b.await) > 0) {
		return nil
	}
	sort.Slice(b.queue, func(i, j int) bool { return b.queue[i].index < b.queue[j].index })
	n := min(b.size, len(b.queue))
	batch := b.queue[:n:n]
	b.queue = b.queue[n:]
	return batch
}

// launch sends batch in a goroutine of its own; the entries wait for it.
// Once nobody else will join, what is left goes out in further batches.
func (b *batcher) launch(batch []*batchEntry) {
	for len(batch) > 0 {
		go b.send(batch)
		b.mu.Lock()
		batch = b.cut()
		b.mu.Unlock()
	}
}

// send sends one batch as one mutating call (one unit of the call limit,
// one request through the shared limiter) and hands each entry its result.
func (b *batcher) send(batch []*batchEntry) {
	ds := make([]spec.Device, len(batch))
	for i, e := range batch {
		ds[i] = *e.c.Desired
	}
	var (
		lives []planner.Live
		errs  []error
	)
	err := b.r.call(b.w.sched, func(cctx context.Context) error {
		for _, e := range batch {
			b.r.emit(changeEvent(ChangeStarted, e.c, "", "create"))
		}
		b.r.emit(Event{Kind: Info, Wave: b.w.index, Message: fmt.Sprintf("creating %d devices in one batch request (%s .. %s)",
			len(batch), batch[0].c.Slot(), batch[len(batch)-1].c.Slot())})
		lives, errs = b.bc.CreateBatch(cctx, ds)
		return nil
	})
	for i, e := range batch {
		switch {
		case err != nil:
			e.done <- batchResult{err: err}
		case len(lives) != len(batch) || len(errs) != len(batch):
			// A Cloud that broke its contract: nothing can be trusted.
			e.done <- batchResult{err: errBatchAnswer{n: len(batch)}}
		default:
			e.done <- batchResult{live: lives[i], err: errs[i]}
		}
	}
}

// errBatchAnswer is a batch answer that cannot be matched to its entries:
// every entry may or may not exist.
type errBatchAnswer struct{ n int }

func (e errBatchAnswer) Error() string {
	return fmt.Sprintf("the batch answer does not have one result for each of its %d devices", e.n)
}

// Ambiguous is true: the slot lookup decides.
func (errBatchAnswer) Ambiguous() bool { return true }
