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
	c     *planner.Change
	index int              // in the plan: entries are sent in plan order
	done  chan batchResult // buffered: the sender never blocks
}

// batcher gathers the first creates of one group of a wave (canaries,
// the rest, see runWave) into batch requests of up to size entries, cut
// in plan order: the k-th create of the group goes into batch k/size. A
// batch goes out once each of its creates has joined it or left (failed
// before its call). The changes of a group all start together and create
// first, so nobody waits on a change that comes late, and the batches do
// not depend on which goroutine runs first.
type batcher struct {
	r    *run
	w    *wave
	bc   BatchCreator
	size int
	mu   sync.Mutex
	// batchOf maps each create of the group that has not joined or left
	// yet to its batch and its plan index.
	batchOf map[*planner.Change][2]int
	batches []*pendingBatch
}

// pendingBatch is one batch being gathered.
type pendingBatch struct {
	want    int // creates that belong to it
	settled int // of those, joined or left
	entries []*batchEntry
}

// startBatches returns the batcher of group (nil when batching is off) and
// registers it for the group's creates.
func (r *run) startBatches(w *wave, group []int) *batcher {
	bc, ok := r.cloud.(BatchCreator)
	if !ok || r.plan.Rollout.CreateBatch <= 0 {
		return nil
	}
	b := &batcher{r: r, w: w, bc: bc, size: min(r.plan.Rollout.CreateBatch, spec.MaxCreateBatch), batchOf: map[*planner.Change][2]int{}}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.batchers == nil {
		r.batchers = map[*planner.Change]*batcher{}
	}
	n := 0
	for _, i := range group {
		c := &r.plan.Changes[i]
		if c.Desired == nil || !createsFirst(r.plan, c) || !batchable(c) {
			continue
		}
		k := n / b.size
		if k == len(b.batches) {
			b.batches = append(b.batches, &pendingBatch{})
		}
		b.batches[k].want++
		b.batchOf[c] = [2]int{k, i}
		r.batchers[c] = b
		n++
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
// joined (it failed before its call) must not hold its batch back.
func (b *batcher) leave(i int) {
	if b == nil {
		return
	}
	b.settle(&b.r.plan.Changes[i], nil)
}

// settle records that c joined its batch (e != nil) or left it, and sends
// the batch when c was the last of it. It reports false when c is not
// one of the batcher's creates or settled before.
func (b *batcher) settle(c *planner.Change, e *batchEntry) bool {
	b.mu.Lock()
	at, ok := b.batchOf[c]
	if !ok {
		b.mu.Unlock()
		return false
	}
	delete(b.batchOf, c)
	pb := b.batches[at[0]]
	if e != nil {
		e.index = at[1]
		pb.entries = append(pb.entries, e)
	}
	pb.settled++
	var ready []*batchEntry
	if pb.settled == pb.want {
		ready = pb.entries
		pb.entries = nil
	}
	b.mu.Unlock()
	if len(ready) > 0 {
		sort.Slice(ready, func(i, j int) bool { return ready[i].index < ready[j].index })
		go b.send(ready)
	}
	return true
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
	e := &batchEntry{c: c, done: make(chan batchResult, 1)}
	if !b.settle(c, e) {
		return r.createOnce(gate, c, first)
	}
	res := <-e.done
	switch {
	case res.err == nil, errors.Is(res.err, errNotSent), isAmbiguous(res.err):
		// Done, not sent, or for the slot lookup (safeCreate) to resolve.
		return res.live, res.err
	}
	// Refused: no device was made for the entry, so it is created alone,
	// and a refusal of the slot itself comes back naming it.
	r.emit(changeEvent(Info, c, "", fmt.Sprintf("the batch create was refused (%v); creating the device alone", res.err)))
	return r.createOnce(gate, c, false)
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
