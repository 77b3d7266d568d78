package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/pkg/executor"
	"github.com/lkfleet/lkfleet/pkg/lease"
	"github.com/lkfleet/lkfleet/pkg/packet"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// lockFlags say where a fleet's lease is held and how long to wait for it.
type lockFlags struct {
	where   string
	timeout time.Duration
	settle  time.Duration
	ttl     time.Duration
}

// addLockFlags adds --lock, and for commands that change the fleet
// (waits) --lock-timeout and the tuning flags.
func addLockFlags(cmd *cobra.Command, l *lockFlags, waits bool) {
	cmd.Flags().StringVar(&l.where, "lock", "api", "where the fleet's lease is held: api (the project's customdata), etcd://HOST:PORT/PREFIX, or none")
	if !waits {
		return
	}
	cmd.Flags().DurationVar(&l.timeout, "lock-timeout", 0, "wait this long for another run's lease on the fleet (0: exit 1 at once, naming the holder)")
	cmd.Flags().DurationVar(&l.settle, "lock-settle", 0, "api lease: wait between writing the lease and reading it back; must exceed any write's time (default $LKFLEET_LOCK_SETTLE, else "+lease.DefaultSettle.String()+")")
	cmd.Flags().DurationVar(&l.ttl, "lock-ttl", 0, "how long a lease outlives a run killed without releasing it (default "+lease.DefaultTTL.String()+")")
	_ = cmd.Flags().MarkHidden("lock-settle")
	_ = cmd.Flags().MarkHidden("lock-ttl")
}

// openLock opens fleet's lease where --lock says, on a client of its own
// (unlock, which lists nothing, has no other).
func openLock(env *Env, fleet *spec.Fleet, a apiFlags, l lockFlags) (lease.Lock, func(), error) {
	client, err := newClient(env, fleet, a)
	if err != nil {
		return nil, nil, err
	}
	lk, closeLock, err := openLockOn(env, fleet, client, l, nil)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return lk, func() { closeLock(); _ = client.Close() }, nil
}

// openLockOn opens the fleet's lease on client, which the caller keeps
// (and closes); wrote, when not nil, is the customdata backend's Wrote.
func openLockOn(env *Env, fleet *spec.Fleet, client *packet.Client, l lockFlags, wrote func()) (lease.Lock, func(), error) {
	settle := l.settle
	if settle == 0 {
		if v := env.Getenv("LKFLEET_LOCK_SETTLE"); v != "" {
			var err error
			if settle, err = time.ParseDuration(v); err != nil || settle <= 0 {
				return nil, nil, fmt.Errorf("LKFLEET_LOCK_SETTLE=%q: want a positive duration such as 2s", v)
			}
		}
	}
	lk, closeLock, err := lease.Open(l.where, fleet.Name, client, lease.CustomdataOptions{TTL: l.ttl, Settle: settle, Wrote: wrote})
	if err != nil {
		return nil, nil, err
	}
	return lk, func() { _ = closeLock() }, nil
}

// fleetLease is the lease of a run that changes the fleet. Taking it
// runs in the background from startLease and is joined by ready before
// the first change.
type fleetLease struct {
	env    *Env
	lock   lease.Lock
	client *packet.Client
	close  func()
	cancel context.CancelFunc
	done   chan struct{}
	held   *lease.Held
	err    error
	// me is the acquisition's Info (its RunID names the run's markers);
	// live is the fleet as listed under the lease (ready); keep are the
	// finished runs whose markers the fleet's devices carry once the run
	// is over (see ran), and finished the record release writes (nil: a
	// plain release).
	me       lease.Info
	live     []planner.Live
	runs     planner.Runs // the finished runs the plan was computed with
	keep     []string
	finished *lease.Run
	// changing is set by begin, before the run's first change: until
	// then release withdraws the lease rather than release it.
	changing bool
	// notes holds what the acquisition has to say (who holds the fleet
	// while it waits, --lock none) until ready: apply takes its lease
	// while it plans, and a plan without changes never uses it.
	mu    sync.Mutex
	asked bool // ready was called
	notes []string
	// started is closed once the lease's first write is in, or Hold
	// waits or returned (see settling).
	started   chan struct{}
	startOnce sync.Once
}

// startLease begins taking fleet's lease for op in the background, on
// the run's own client: the lease's reads, writes and renewals share the
// run's limiter with its other calls (and count in its summary), so a
// busy rollout against a small rate limit cannot starve its renewals.
func startLease(ctx context.Context, env *Env, fleet *spec.Fleet, client *packet.Client, l lockFlags, op string) (*fleetLease, error) {
	fl := &fleetLease{env: env, client: client, done: make(chan struct{}), started: make(chan struct{}), me: lease.Me(op)}
	lk, closeLock, err := openLockOn(env, fleet, client, l, fl.start)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	fl.lock, fl.close, fl.cancel = lk, closeLock, cancel
	if l.where == "none" {
		fl.note(fmt.Sprintf("Warning: --lock none: nothing keeps another run from changing fleet %q at the same time.", fleet.Name))
	}
	go func() {
		defer close(fl.done)
		defer fl.start()
		fl.held, fl.err = lease.Hold(ctx, lk, fl.me, lease.HoldOptions{
			Timeout: l.timeout,
			OnWait: func(h *lease.Info) {
				fl.start()
				fl.note(fmt.Sprintf("Waiting up to %s (--lock-timeout) for the lease on fleet %q: held by %s.", l.timeout, fleet.Name, h))
			},
		})
	}()
	return fl, nil
}

// start closes started, once.
func (fl *fleetLease) start() { fl.startOnce.Do(func() { close(fl.started) }) }

// settling returns once the run's other requests can go without holding
// up the lease: its record is written and the settle delay runs (the run
// plans meanwhile), or taking it ended, or it waits for another run's
// lease. Requests between the lease's read and its write would make that
// attempt too slow to be safe at a low rate limit (lease.SlowError), so
// apply plans only from here.
func (fl *fleetLease) settling(ctx context.Context) error {
	select {
	case <-fl.started:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// note prints s on stderr once the run has asked for its lease (ready),
// and keeps it until then.
func (fl *fleetLease) note(s string) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	if !fl.asked {
		fl.notes = append(fl.notes, s)
		return
	}
	fmt.Fprintln(fl.env.Err, s)
}

// begin marks the run as about to change the fleet: from now on release
// gives the lease up as the fleet's last change (see release).
func (fl *fleetLease) begin() {
	if fl != nil {
		fl.changing = true
	}
}

// ready waits for the lease, then makes sure p still describes the fleet:
// it lists the fleet again under the lease, and when the devices changed
// since p was computed (another run ended meanwhile) it plans again with
// replan, or refuses when replan is nil (a saved plan). The returned
// context ends when the lease is lost: run the changes under it.
func (fl *fleetLease) ready(ctx context.Context, p *planned, replan func() (*planned, error)) (context.Context, *planned, error) {
	fl.mu.Lock()
	fl.asked = true
	for _, s := range fl.notes {
		fmt.Fprintln(fl.env.Err, s)
	}
	fl.notes = nil
	fl.mu.Unlock()
	select {
	case <-fl.done:
	case <-ctx.Done():
		fl.cancel()
		<-fl.done
		return nil, nil, context.Cause(ctx)
	}
	if fl.err != nil {
		return nil, nil, fl.err
	}
	live, err := fl.client.List(fl.held.Context())
	if err != nil {
		return nil, nil, err
	}
	// Under the lease only this run changes the fleet, and its PUTs only
	// replace markers by its own or drop them: the finished runs the
	// record must keep are those these devices name, but for the devices
	// the run rewrote (ran).
	fl.live = live
	changed := planner.LiveFingerprint(live) != p.plan.LiveFingerprint
	if !changed && replan != nil && fl.settledSince(fl.held.Context(), live, p.runs) {
		// Same devices, but a run that held the lease before ours
		// recorded their rebuilds finished after our plan read the
		// record: planning again spares them a second reboot. (A saved
		// plan keeps its reading: at worst it reboots them once more.)
		fmt.Fprintln(fl.env.Err, "Another run finished its rebuilds while this run took its lease; planning again.")
		p.client.Close()
		if p, err = replan(); err != nil {
			return nil, nil, err
		}
		return fl.held.Context(), p, nil
	}
	if changed {
		if replan == nil {
			return nil, nil, errors.New("the fleet's devices changed between planning and taking the fleet's lease (another run?): run the command again")
		}
		fmt.Fprintln(fl.env.Err, "The fleet's devices changed while this run took its lease; planning again.")
		p.client.Close()
		if p, err = replan(); err != nil {
			return nil, nil, err
		}
		return fl.held.Context(), p, nil
	}
	// The same fingerprint means the same devices in the same slots, so
	// what pipeline.CheckSaved checked a saved plan's targets against
	// still holds under the lease.
	return fl.held.Context(), p, nil
}

// settledSince reports whether a marker that runs (the plan's reading of
// the record) calls unfinished is settled by the record as it is now. It
// reads the record only when some device has such a marker.
func (fl *fleetLease) settledSince(ctx context.Context, live []planner.Live, runs planner.Runs) bool {
	rec, ok := fl.lock.(lease.Recorder)
	if !ok || !slices.ContainsFunc(live, func(l planner.Live) bool { return l.Unfinished(runs) }) {
		return false
	}
	_, now, err := rec.State(ctx)
	if err != nil {
		return false // the plan's reading is the safe one
	}
	fresh := finishedRuns(now)
	return slices.ContainsFunc(live, func(l planner.Live) bool { return l.Unfinished(runs) && !l.Unfinished(fresh) })
}

// runID is the run id the executor marks in-place rebuilds with
// (executor.Options.RunID): the acquisition's, when the lease records
// finished runs and plan has an in-place rebuild; "" otherwise (the
// two-PUT rebuild, for --lock none).
func (fl *fleetLease) runID(plan planner.Plan) string {
	if fl == nil || fl.held == nil {
		return ""
	}
	if _, ok := fl.lock.(lease.Recorder); !ok {
		return ""
	}
	for _, c := range plan.Changes {
		if c.Action == planner.Rebuild && c.Strategy.InPlace() {
			return fl.me.RunID()
		}
	}
	return ""
}

// ran records what the executor reported for run id (see runID): release
// then writes it as finished, naming the unconfirmed devices. Called once
// executor.Apply returned, whatever its outcome: every call it sent has
// returned by then.
func (fl *fleetLease) ran(id string, runs planner.Runs, res executor.Result) {
	if fl == nil || id == "" {
		return
	}
	fl.runs = runs
	fl.finished = &lease.Run{ID: id, At: time.Now().UTC().Truncate(time.Second), Unconfirmed: res.Unconfirmed}
	rewritten := make(map[string]bool, len(res.Rewritten))
	for _, id := range res.Rewritten {
		rewritten[id] = true
	}
	rest := slices.DeleteFunc(slices.Clone(fl.live), func(l planner.Live) bool { return rewritten[l.ID] })
	fl.keep = planner.SettledRuns(rest, fl.runs)
}

// finish turns the error of a run whose lease was lost into one that says
// so (the run stopped because another may be changing the fleet).
func (fl *fleetLease) finish(err error) error {
	if fl.held == nil {
		return err
	}
	if cause := context.Cause(fl.held.Context()); errors.Is(cause, lease.ErrLost) {
		return fmt.Errorf("stopped before finishing: %w", cause)
	}
	return err
}

// release gives the lease up (or abandons taking it) and closes its
// connections. Deferred right after startLease. A run that changed
// nothing (begin was not called: no changes, a declined prompt, an error
// before the first change) withdraws the lease instead, so that the
// record still says when the fleet last changed (lease.Held.Withdraw).
func (fl *fleetLease) release() {
	if fl == nil {
		return // never started
	}
	fl.cancel()
	<-fl.done
	if fl.held != nil {
		release := fl.held.Withdraw
		switch {
		case fl.finished != nil:
			release = func() error { return fl.held.FinishRelease(*fl.finished, fl.keep) }
		case fl.changing:
			release = fl.held.Release
		}
		if err := release(); err != nil {
			fmt.Fprintf(fl.env.Err, "Warning: %v (it expires on its own within %s)\n", err, fl.lock.TTL())
		}
	}
	fl.close()
}

// quietSince is the executor's QuietSince for the run under fl: when the
// run that held the fleet's lease before this one stopped changing it, as
// the lease says (lease.Prior: released, or an expired record's bound).
// Zero, the full list-lag wait, when nothing is known: no lease (a plan
// without changes, --lock none), a fleet never locked, a lease broken by
// unlock, the etcd backend (it records no release time). It is never
// after now: the run that held the lease before ours stopped before we
// took it, so our own start bounds its changes too (the released time
// carries the clock skew allowance, which a re-run on one host would
// otherwise pay on top of the lag).
func (fl *fleetLease) quietSince() time.Time {
	if fl == nil || fl.held == nil {
		return time.Time{}
	}
	ended := fl.held.Prior().Ended
	if now := time.Now(); ended.After(now) {
		return now
	}
	return ended
}

// leaseState is what one read of the fleet's lease says: who holds it
// (nil: nobody) and the finished runs that settle pending markers; err
// says why the lease could not be read (then both are zero).
type leaseState struct {
	holder *lease.Info
	runs   planner.Runs
	err    error
}

// warn prints why the lease could not be read, if it could not. Callers
// warn after their own listing succeeded: a refused token is said once,
// by the listing's clearer error.
func (st leaseState) warn(env *Env) {
	if st.err != nil {
		fmt.Fprintf(env.Err, "Warning: could not check the fleet's lease: %v\n", st.err)
	}
}

// readLease reads the fleet's lease once, for plan, apply and status, on
// the command's own client (its pacer, its connections): the holder and
// the finished runs come from the same read, so they cost plan
// no request beyond the one it always made. A lease that cannot be read
// is a warning (leaseState.warn): the zero runs read every marker as
// unfinished, the safe reading (an extra rebuild, never a wrong "done").
func readLease(ctx context.Context, env *Env, fleet *spec.Fleet, client *packet.Client, l lockFlags) leaseState {
	lk, closeLock, err := openLockOn(env, fleet, client, l, nil)
	if err != nil {
		return leaseState{err: err}
	}
	defer closeLock()
	var st leaseState
	var runs []lease.Run
	rec, recorded := lk.(lease.Recorder)
	if recorded {
		st.holder, runs, err = rec.State(ctx)
	} else {
		st.holder, err = lk.Holder(ctx)
	}
	if err != nil {
		return leaseState{err: err}
	}
	st.runs = finishedRuns(runs)
	if recorded {
		st.runs.Max = lease.MaxRuns // a finishing run drops the oldest beyond it
	}
	return st
}

// finishedRuns turns a lease record's finished runs into the planner's.
func finishedRuns(runs []lease.Run) planner.Runs {
	var out planner.Runs
	for _, r := range runs {
		out.Finish(r.ID, r.Unconfirmed)
	}
	return out
}

// noteRunning tells the user of plan that a run holds the fleet's lease:
// the plan may be out of date as soon as that run makes its next change.
func noteRunning(env *Env, fleet *spec.Fleet, st leaseState) {
	st.warn(env)
	if st.holder != nil {
		fmt.Fprintf(env.Err, "Note: fleet %q is being changed right now: %s. This plan shows the fleet as it was at this moment.\n", fleet.Name, st.holder)
	}
}
