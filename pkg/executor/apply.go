package executor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// WaitMode says what "ready" means for a device apply waits on.
type WaitMode string

// The wait modes of `apply --wait`.
const (
	// WaitActive waits for the API state active (the default). Active is
	// not booted: the API says active as soon as iPXE was served.
	WaitActive WaitMode = "active"
	// WaitBooted waits for the device's own user state "succeeded", posted
	// from inside once the image is really up; "failed" fails the device.
	WaitBooted WaitMode = "booted"
	// WaitNone returns once the calls are accepted (see docs/executor.md
	// for the one wait it keeps: a replacement is active before its old
	// device is deleted).
	WaitNone WaitMode = "none"
)

// ParseWaitMode turns a --wait flag value into a WaitMode.
func ParseWaitMode(s string) (WaitMode, error) {
	switch m := WaitMode(s); m {
	case WaitActive, WaitBooted, WaitNone:
		return m, nil
	case "":
		return WaitActive, nil
	}
	return "", fmt.Errorf("parse wait mode %q: want active, booted or none", s)
}

// Defaults of Options, exported so the CLI can show them in help text.
const (
	DefaultParallelism  = 10
	DefaultPollInterval = time.Second
	DefaultCallTimeout  = 2 * time.Minute
	DefaultListLag      = 5 * time.Second
	// DefaultMaxListOutage is Options.MaxListOutage's default.
	DefaultMaxListOutage = 5 * time.Minute
)

// Options tune Apply. The zero value is usable.
type Options struct {
	// Parallelism caps concurrent mutating API calls (default 10). The
	// plan's Rollout.MaxInFlight caps it further.
	Parallelism int
	// Wait says when a device counts as ready (default WaitActive).
	Wait WaitMode
	// PollInterval is the period of the one fleet-wide listing used for
	// waiting (default 1s): completion is noticed within about one
	// interval, and waiting never costs more than one listing per interval.
	PollInterval time.Duration
	// Timeout bounds the whole apply (0 = none). When it expires Apply
	// behaves as on Ctrl-C and its error wraps context.DeadlineExceeded.
	Timeout time.Duration
	// FailedRetries is how often a failed device is deleted and created
	// again (0 = the default, 1; negative = never).
	FailedRetries int
	// CallTimeout bounds one API call. Calls do not see the cancellation of
	// Apply's context (a create in flight must finish so its device is
	// tracked), so this is what keeps Ctrl-C prompt (default 2m).
	CallTimeout time.Duration
	// ListLag is how long a new device may be missing from listings
	// (default 5s; negative: the API has none). It bounds three things
	// (see docs/reliability.md): after an ambiguous create the slot is
	// looked up until a listing begun this long after the failed call
	// still does not show it; before its first create a run looks each
	// slot up until a listing begun this long after QuietSince; and a
	// created device never listed within the lag and a margin is missing.
	ListLag time.Duration
	// QuietSince is a time by which every earlier run of the fleet had
	// made its last create. An earlier run killed or interrupted a moment
	// ago may have created devices the listings still hide: a slot is
	// created only once a listing begun ListLag after QuietSince shows it
	// empty, and a device such a listing shows in it is adopted instead.
	// Zero means Apply's start, the only safe assumption without more
	// knowledge. A caller that knows better (e.g. from a lease released
	// long ago) sets it earlier; when QuietSince+ListLag has passed by
	// Apply's start the plan's own listing is trusted and no create waits,
	// so it must be set so only when the plan was listed after that.
	QuietSince time.Time
	// MaxListOutage is how long the fleet listing may keep failing (after
	// the client's own retries) before apply gives up on waiting: without
	// a listing no device can ever be seen ready. Default 5m; negative =
	// wait forever (Timeout still applies).
	MaxListOutage time.Duration
	// RunID names this run in the pending markers of its in-place rebuilds
	// (planner.TagPending): set when the fleet's lease records finished
	// runs (lease.Recorder), it makes a rebuild one PUT and its action, the
	// caller recording at release that the run finished with every action
	// sent except Result.Unconfirmed. "" (no record, --lock none): each
	// rebuild takes a second PUT after its action to clear the marker.
	RunID string
	// Runs are the finished runs the plan was computed with: a rebuild of
	// a device whose earlier rebuild is unfinished keeps, in its marker,
	// the rev the device may still run (planner.Live.BootedRev).
	Runs planner.Runs
	// OnEvent receives every Event, from several goroutines at once; the
	// receiver serialises. nil drops events.
	OnEvent func(Event)
}

func (o Options) withDefaults(maxInFlight int) Options {
	if o.Parallelism <= 0 {
		o.Parallelism = DefaultParallelism
	}
	if maxInFlight > 0 && maxInFlight < o.Parallelism {
		o.Parallelism = maxInFlight
	}
	if o.Wait == "" {
		o.Wait = WaitActive
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	switch {
	case o.FailedRetries == 0:
		o.FailedRetries = 1
	case o.FailedRetries < 0:
		o.FailedRetries = 0
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	switch {
	case o.ListLag == 0:
		o.ListLag = DefaultListLag
	case o.ListLag < 0:
		o.ListLag = 0
	}
	switch {
	case o.MaxListOutage == 0:
		o.MaxListOutage = DefaultMaxListOutage
	case o.MaxListOutage < 0:
		o.MaxListOutage = 0
	}
	return o
}

// FailedDevice is a change that did not succeed: a device that ended
// failed (after its retries) or a call the API refused.
type FailedDevice struct {
	Hostname string
	Slot     string
	// ID is the failed device, "" when no device was made.
	ID string
	// LastEvent is what went wrong: the failed boot's message, the state,
	// or the API's error.
	LastEvent string
}

func (f FailedDevice) String() string {
	id := f.ID
	if id == "" {
		id = "none"
	}
	return fmt.Sprintf("device %q (slot %s, id %s): %s", f.Hostname, f.Slot, id, f.LastEvent)
}

// Result is what Apply did. Every change of the plan is counted exactly
// once: in a counter, in Failed or in NotDone.
type Result struct {
	Created  int
	Rebuilt  int
	Updated  int
	Deleted  int
	Replaced int
	// Failed lists the changes that failed, in the order they failed.
	Failed []FailedDevice
	// NotDone lists the changes not carried out (Ctrl-C, timeout, halt),
	// in plan order. Re-running apply picks them up.
	NotDone []planner.Change
	// Made maps the slot of each replace in NotDone that had already made
	// its new device to that device's id: both devices stand in the slot
	// until the next apply keeps the newest healthy one.
	Made map[string]string
	// Halted is set when a wave exceeded max_failures; HaltReason says why
	// (its count agrees with Failed; how to resume is the caller's to say).
	Halted     bool
	HaltReason string
	Elapsed    time.Duration
	// Unconfirmed lists, with Options.RunID set, the devices whose rebuild
	// PUT may have been made (it was sent) without their reboot or
	// reinstall being accepted: their markers must stay unfinished, so the
	// caller's record of the run names them (lease.Run.Unconfirmed).
	Unconfirmed []string
	// Rewritten lists, with Options.RunID set, the devices whose PUT of
	// lkfleet's tags (an in-place rebuild's or an update's) was accepted:
	// they no longer carry an earlier run's marker, so the caller's record
	// need not keep those runs for them.
	Rewritten []string
}

// ErrHalted is wrapped by Apply's error when the rollout halted.
var ErrHalted = errors.New("rollout halted")

// Apply carries out plan against cloud: creates, rebuilds, updates,
// replaces and deletes devices wave by wave under the plan's rollout
// budgets, waiting for devices as opts.Wait says. It returns when every
// change is done, failed or abandoned, and never before the calls it sent
// have returned.
//
// The error is nil only when everything succeeded. It wraps
// context.Canceled (Ctrl-C) or context.DeadlineExceeded (Options.Timeout)
// when apply stopped early, ErrHalted when a wave exceeded max_failures,
// and names every failed device. The Result is meaningful in every case.
func Apply(ctx context.Context, cloud Cloud, plan planner.Plan, opts Options) (Result, error) {
	start := time.Now()
	opts = opts.withDefaults(plan.Rollout.MaxInFlight)
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	// A sustained API outage ends the run like a timeout, with its own
	// cause (see Options.MaxListOutage).
	ctx, giveUp := context.WithCancelCause(ctx)
	defer giveUp(nil)
	if opts.QuietSince.IsZero() {
		opts.QuietSince = start
	}
	r := newRun(cloud, narrowReservations(plan), opts)
	r.fenced = time.Since(opts.QuietSince) < opts.ListLag
	r.w.outage, r.w.giveUp = opts.MaxListOutage, giveUp

	wctx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.w.run(wctx) })

	r.runWaves(ctx)

	// Every change goroutine has returned, and each ran its own calls, so
	// no call is in flight.
	stopWatch()
	wg.Wait()

	res := r.result()
	res.Elapsed = time.Since(start)
	return res, r.err(ctx, res)
}

// run is the state of one Apply.
type run struct {
	cloud Cloud
	plan  planner.Plan
	opts  Options
	w     *watcher
	// slots bounds concurrent mutating calls: one token per call in
	// flight, capacity Parallelism.
	slots chan struct{}

	mu  sync.Mutex
	res Result
	// notDone holds the plan index of every change not carried out.
	notDone map[int]bool
	// cut holds the changes cut short (see cutShort).
	cut map[*planner.Change]bool
	// known holds the ids of devices that are not a slot's new device: the
	// plan's live devices and devices this run deleted or gave up on. An
	// ambiguous create's lookup ignores them.
	known map[string]bool
	// canaryLeft is how many canaries are still to be picked.
	canaryLeft int
	// victims holds the ids of every device the plan deletes: none of them
	// counts as the device that keeps a duplicate's slot serving.
	victims map[string]bool
	// fenced: creates wait out the list lag after QuietSince (see fence);
	// fenceOnce announces it once.
	fenced    bool
	fenceOnce sync.Once
	vlans     vlanCache // network.go
	// haltWave is the wave whose failures halted the rollout (nil: none).
	haltWave *wave
	// batchers maps each create that goes into a batch request to its
	// group's batcher (batch.go).
	batchers map[*planner.Change]*batcher
	// unconfirmed and rewritten hold the devices of Result.Unconfirmed
	// and Result.Rewritten (flows.go).
	unconfirmed, rewritten map[string]bool
}

func newRun(cloud Cloud, plan planner.Plan, opts Options) *run {
	r := &run{
		cloud:      cloud,
		plan:       plan,
		opts:       opts,
		notDone:    map[int]bool{},
		cut:        map[*planner.Change]bool{},
		known:      map[string]bool{},
		victims:    map[string]bool{},
		canaryLeft: plan.Rollout.Canary,
	}
	r.slots = make(chan struct{}, opts.Parallelism)
	r.w = newWatcher(cloud, opts.PollInterval, r.emit)
	for _, c := range plan.Changes {
		if c.DeviceID() != "" {
			r.known[c.DeviceID()] = true
		}
		if c.Live != nil && c.Live.ID != "" {
			r.known[c.Live.ID] = true
		}
		if c.Action == planner.Delete && c.DeviceID() != "" {
			r.victims[c.DeviceID()] = true
		}
	}
	return r
}

// errNotSent reports that a call was not sent because scheduling stopped.
var errNotSent = errors.New("not sent: scheduling stopped")

// call runs one mutating API call under the parallelism limit. gate
// decides whether the call may still be sent when a slot frees up; the
// call itself gets a context that Ctrl-C does not cancel (so a create in
// flight completes and its device is tracked) but CallTimeout bounds.
func (r *run) call(gate context.Context, fn func(ctx context.Context) error) error {
	// The calling goroutine runs the call itself: a goroutine per call
	// (errgroup.Go) cost a spawn, a fresh stack grown again every time and
	// a wake-up of the waiting caller, about a tenth of apply's CPU. The
	// channel's queue of blocked senders is first come, first served, as
	// errgroup's own semaphore was.
	r.slots <- struct{}{} // blocks while Parallelism calls are in flight
	defer func() { <-r.slots }()
	if gate.Err() != nil {
		return errNotSent
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(gate), r.opts.CallTimeout)
	defer cancel()
	return fn(cctx)
}

func (r *run) emit(e Event) {
	if r.opts.OnEvent == nil {
		return
	}
	e.Time = time.Now()
	r.opts.OnEvent(e)
}

// changeEvent is an Event about one change.
func changeEvent(kind EventKind, c *planner.Change, id, msg string) Event {
	return Event{Kind: kind, Wave: c.Wave, Action: c.Action, Slot: c.Slot(), Hostname: c.Hostname(), DeviceID: id, Message: msg}
}

// markKnown records that id is not a slot's new device.
// made records the new device of a replace that stopped before its old
// device was deleted: the change is not done, but the device exists and
// the summary counts it.
func (r *run) made(c *planner.Change, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.res.Made == nil {
		r.res.Made = map[string]string{}
	}
	r.res.Made[c.Slot()] = id
}

func (r *run) markKnown(id string) {
	r.mu.Lock()
	r.known[id] = true
	r.mu.Unlock()
}

func (r *run) isKnown(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.known[id]
}

// outcome is how a change ended.
type outcome int

const (
	done       outcome = iota // counted in Result
	failed                    // in Result.Failed
	reported                  // failed, and already recorded by the change
	notStarted                // in Result.NotDone
)

func (r *run) runChange(ctx context.Context, w *wave, i int) {
	c := &r.plan.Changes[i]
	var (
		oc outcome
		fd FailedDevice
	)
	switch c.Action {
	case planner.Create:
		if c.ReservationAfter != "" { // reservations.go
			oc, fd = r.doFreedCreate(ctx, w, c)
		} else {
			oc, fd = r.doCreate(ctx, w, c)
		}
	case planner.Delete:
		oc, fd = r.doDelete(w, c)
	case planner.Update:
		oc, fd = r.doUpdate(w, c)
	case planner.Replace:
		if c.ReservationAfter != "" { // reservations.go
			oc, fd = r.doReservedReplace(ctx, w, c)
		} else {
			oc, fd = r.doReplace(ctx, w, c)
		}
	case planner.Rebuild:
		if s := strategy(r.plan, c); s.InPlace() {
			oc, fd = r.doInPlace(ctx, w, c, s)
		} else if c.ReservationAfter != "" {
			oc, fd = r.doReservedReplace(ctx, w, c)
		} else {
			oc, fd = r.doReplace(ctx, w, c)
		}
	default:
		oc, fd = failed, FailedDevice{LastEvent: fmt.Sprintf("unknown action %q", c.Action)}
	}
	switch oc {
	case notStarted:
		r.skip([]int{i})
	case failed:
		r.fail(w, c, fd)
	case reported:
	case done:
		r.count(c)
	}
}

// strategy is a rebuild's strategy: the one the planner resolved into the
// change; a change built without one (in code) resolves the rollout's the
// same way the planner would.
func strategy(plan planner.Plan, c *planner.Change) spec.Strategy {
	if c.Strategy != "" {
		return c.Strategy
	}
	s, _ := plan.Rollout.Rebuild.For(c.Desired == nil || c.Desired.AlwaysPXE)
	return s
}

func (r *run) count(c *planner.Change) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch c.Action {
	case planner.Create:
		r.res.Created++
	case planner.Delete:
		r.res.Deleted++
	case planner.Update:
		r.res.Updated++
	case planner.Replace:
		r.res.Replaced++
	case planner.Rebuild:
		r.res.Rebuilt++
	}
}

func (r *run) result() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := r.res
	res.Failed = append([]FailedDevice(nil), r.res.Failed...)
	res.Made = maps.Clone(r.res.Made)
	res.Unconfirmed = slices.Sorted(maps.Keys(r.unconfirmed))
	res.Rewritten = slices.Sorted(maps.Keys(r.rewritten))
	for i, c := range r.plan.Changes {
		if r.notDone[i] {
			res.NotDone = append(res.NotDone, c)
		}
	}
	return res
}

// err builds Apply's error from the result.
func (r *run) err(ctx context.Context, res Result) error {
	var errs []error
	if ctx.Err() != nil {
		// The cause tells Ctrl-C (Canceled) from --timeout
		// (DeadlineExceeded) and from an API that stayed unreachable.
		errs = append(errs, fmt.Errorf("apply stopped with %d change(s) not done: %w", len(res.NotDone), context.Cause(ctx)))
	}
	if res.Halted {
		errs = append(errs, fmt.Errorf("%w: %s", ErrHalted, res.HaltReason))
	}
	for _, f := range res.Failed {
		errs = append(errs, errors.New(f.String()))
	}
	return errors.Join(errs...)
}
