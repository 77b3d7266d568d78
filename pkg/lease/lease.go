// Package lease keeps one apply per fleet at a time without a state file.
//
// A lease names its holder (host, pid, a random id), says since when it is
// held and until when, and is renewed while its holder runs; a holder that
// is killed stops renewing, so its lease expires after a bounded time
// instead of blocking the fleet forever. Two backends hold it: the
// project's customdata in the API itself (NewCustomdata, so every machine
// that can reach the project sees it) and etcd (NewEtcd, for teams that run
// one). Commands see only the Lock interface and Hold.
//
// docs/reliability.md states the guarantee and what it assumes.
package lease

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"
)

// Defaults for the zero fields of the backends' options and of Hold.
const (
	// DefaultTTL is how long a lease lives without renewal: how long a
	// killed apply blocks the fleet at most.
	DefaultTTL = 60 * time.Second
	// DefaultRetry is how often a waiting apply looks again.
	DefaultRetry = 2 * time.Second
)

// Info describes a lease and its holder.
type Info struct {
	// Holder identifies one acquisition: "HOST/PID/RANDOM". Two runs never
	// share it, not even on one host.
	Holder string `json:"holder"`
	Host   string `json:"host,omitempty"`
	PID    int    `json:"pid,omitempty"`
	// Op is what the holder is doing ("apply", "destroy").
	Op string `json:"op,omitempty"`
	// Since is when the holder took the lease.
	Since time.Time `json:"since"`
	// Expires is when the lease ends unless renewed (holder's clock).
	Expires time.Time `json:"expires"`
}

// String names the holder and since when, for the lines a waiting apply,
// plan and unlock print.
func (i Info) String() string {
	s := i.Op
	if s == "" {
		s = "a run"
	}
	who := i.Holder
	if i.Host != "" {
		who = fmt.Sprintf("%s (pid %d on %s)", i.Holder, i.PID, i.Host)
	}
	s += " by " + who
	if !i.Since.IsZero() {
		s += " since " + i.Since.UTC().Format(time.RFC3339)
	}
	if !i.Expires.IsZero() {
		s += ", lease until " + i.Expires.UTC().Format(time.RFC3339)
	}
	return s
}

// Me returns the Info of a new acquisition by this process for op.
func Me(op string) Info {
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown-host"
	}
	var b [6]byte
	_, _ = crand.Read(b[:])
	pid := os.Getpid()
	return Info{Holder: fmt.Sprintf("%s/%d/%s", host, pid, hex.EncodeToString(b[:])), Host: host, PID: pid, Op: op}
}

// Prior is what an acquisition learned about the run that held the lease
// before it: a time by which that run had stopped changing the fleet.
// Apply passes it on as executor.Options.QuietSince, so that a fleet left
// alone for longer than the list lag is not fenced (docs/reliability.md,
// "Safety across runs").
type Prior struct {
	// Ended bounds the previous holder's last change from above, on this
	// host's clock; zero when nothing is known (no record, a broken lease,
	// the etcd backend, --lock none).
	Ended time.Time
	// How says where Ended comes from: "released" (the holder released the
	// lease cleanly at Ended) or "expired" (the holder stopped renewing;
	// Ended is the bound its record's expiry gives).
	How string
}

// PriorReporter is implemented by backends that know when the previous
// holder stopped: Prior describes what the last successful Acquire found.
type PriorReporter interface {
	Prior() Prior
}

// Withdrawer is implemented by backends that keep what the lease's record
// said before Acquire (the customdata backend): Withdraw gives the lease up
// as if it had not been taken.
type Withdrawer interface {
	Withdraw(ctx context.Context) error
}

// HeldError says the fleet's lease is held by someone else.
type HeldError struct {
	Fleet string
	// Holder is the current holder; nil when the lease was contended but
	// its holder could not be read (the other writer had not finished).
	Holder *Info
	// Waited is how long Hold waited before giving up (0: it did not wait).
	Waited time.Duration
}

// SlowError says the lease could not be taken safely: reading and
// writing it took longer than half the settle delay (a slow or
// rate-limited API), so a rival that read it free meanwhile might not see
// this run's record before its own settle delay ended. Nobody need hold
// the fleet.
type SlowError struct {
	Fleet        string
	Took, Settle time.Duration
}

func (e *SlowError) Error() string {
	return fmt.Sprintf("fleet %q: the lease could not be taken safely: reading and writing it took %s, more than half its settle delay %s (a slow or rate-limited API); raise LKFLEET_LOCK_SETTLE, or use --lock etcd://...",
		e.Fleet, e.Took.Round(time.Millisecond), e.Settle)
}

func (e *HeldError) Error() string {
	who := "another run"
	if e.Holder != nil {
		who = e.Holder.String()
	}
	msg := fmt.Sprintf("fleet %q is locked: %s", e.Fleet, who)
	if e.Waited > 0 {
		msg += fmt.Sprintf(" (waited %s, --lock-timeout)", e.Waited.Round(time.Second))
	}
	return msg
}

// ErrLost is the cause of a held lease's context when the lease was broken
// ('lkfleet unlock'), taken over by another run, or could not be renewed
// before it expired.
var ErrLost = errors.New("lease lost")

// Lock is one fleet's lease in one backend. Acquire, Renew and Release are
// for the holder; Holder and Break for commands that only look (plan) or
// clean up (unlock). Hold drives Acquire and Renew.
type Lock interface {
	// Acquire takes the lease for me (me.Holder must be unique) or returns
	// a *HeldError naming the holder. It may take a few seconds (the
	// customdata backend's settle delay). me.Since and me.Expires are set
	// by the backend.
	Acquire(ctx context.Context, me Info) error
	// Renew extends the lease taken by Acquire; an error wrapping ErrLost
	// means another run holds it now.
	Renew(ctx context.Context) error
	// Release gives the lease up if this process still holds it.
	Release(ctx context.Context) error
	// Holder returns the live lease, nil if the fleet is free.
	Holder(ctx context.Context) (*Info, error)
	// Break removes the lease whoever holds it and returns what it
	// removed (nil if there was none). A live holder notices at its next
	// renewal and stops.
	Break(ctx context.Context) (*Info, error)
	// TTL is how long the lease lives without renewal.
	TTL() time.Duration
}

// HoldOptions say how Hold waits.
type HoldOptions struct {
	// Timeout is how long to wait for a held lease (--lock-timeout);
	// 0 gives up at once.
	Timeout time.Duration
	// Retry is the pause between attempts (default DefaultRetry).
	Retry time.Duration
	// OnWait is called when Hold starts waiting and whenever the holder
	// changes, so the user sees who holds the fleet and since when.
	OnWait func(holder *Info)
}

// Held is a lease Hold took. Its context ends, with cause ErrLost, when the
// lease is lost; Release ends it too.
type Held struct {
	lock   Lock
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
	// took is when the successful Acquire began: no later than the time
	// the backend computed the first expiry from (see renew).
	took  time.Time
	prior Prior
}

// Prior is what the acquisition learned about the previous holder (zero
// when the backend does not say).
func (h *Held) Prior() Prior { return h.prior }

// Hold acquires lk for me, waiting up to o.Timeout while another run holds
// it, and keeps it renewed (every TTL/3) until Release. The returned
// Held's Context is derived from ctx: run the changes under it so that a
// lost lease stops them.
func Hold(ctx context.Context, lk Lock, me Info, o HoldOptions) (*Held, error) {
	retry := o.Retry
	if retry <= 0 {
		retry = DefaultRetry
	}
	start := time.Now()
	var shown *Info
	contended := 0
	var took time.Time
	for {
		took = time.Now()
		err := lk.Acquire(ctx, me)
		if err == nil {
			break
		}
		var he *HeldError
		var se *SlowError
		if errors.As(err, &se) {
			// Too slow to be safe this time (a burst of rate limiting,
			// say): try again a few times, then say why.
			if contended >= maxContended {
				return nil, err
			}
			contended++
			if !sleep(ctx, contendedPause+rand.N(contendedPause)) {
				return nil, context.Cause(ctx)
			}
			continue
		}
		if !errors.As(err, &he) {
			return nil, err
		}
		pause := retry
		if he.Holder == nil && contended < maxContended {
			// Nobody is known to hold the fleet: our attempt met a rival's
			// or was too slow to be safe. Try again soon, whatever the
			// timeout, after a random pause so that rivals fall apart.
			contended++
			pause = contendedPause + rand.N(contendedPause)
			if !sleep(ctx, pause) {
				return nil, context.Cause(ctx)
			}
			continue
		}
		waited := time.Since(start)
		if waited+pause > o.Timeout {
			if o.Timeout > 0 {
				he.Waited = waited
			}
			return nil, he
		}
		if o.OnWait != nil && he.Holder != nil && (shown == nil || shown.Holder != he.Holder.Holder) {
			shown = he.Holder
			o.OnWait(he.Holder)
		}
		if !sleep(ctx, pause) {
			return nil, context.Cause(ctx)
		}
	}
	hctx, cancel := context.WithCancelCause(ctx)
	h := &Held{lock: lk, ctx: hctx, cancel: cancel, done: make(chan struct{}), took: took}
	if pr, ok := lk.(PriorReporter); ok {
		h.prior = pr.Prior()
	}
	go h.renew()
	return h, nil
}

// Contended attempts (no holder known) are retried this often, at once.
const (
	maxContended   = 5
	contendedPause = 100 * time.Millisecond
)

// sleep waits d or until ctx ends; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Context is cancelled with cause ErrLost when the lease is lost.
func (h *Held) Context() context.Context { return h.ctx }

// renew extends the lease every TTL/3. A renewal that fails for another
// reason than ErrLost (the API unreachable) is retried until TTL - TTL/3
// after the start of the last successful attempt; then the lease is
// treated as lost, since another run may take it soon. That deadline is
// also what makes an expired record a bound on its holder's last change
// (Customdata.Prior): the start of an attempt is no later than the time
// the backend computed the record's expiry from, so a holder stops acting
// by (its record's Expires) - TTL/3 (+ the backend's rounding) whatever
// its renewals did; each attempt's own deadline is capped by it.
func (h *Held) renew() {
	defer close(h.done)
	ttl := h.lock.TTL()
	every := ttl / 3
	lastOK := h.took
	if lastOK.IsZero() {
		lastOK = time.Now()
	}
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		giveUp := lastOK.Add(ttl - every)
		attempt := time.Now()
		rctx, cancel := context.WithDeadline(h.ctx, minTime(attempt.Add(every), giveUp))
		err := h.lock.Renew(rctx)
		cancel()
		switch {
		case err == nil:
			lastOK = attempt
		case errors.Is(err, ErrLost):
			h.cancel(err)
			return
		case h.ctx.Err() != nil:
			return
		case !time.Now().Before(giveUp):
			h.cancel(fmt.Errorf("%w: not renewed for %s: %v", ErrLost, time.Since(lastOK).Round(time.Second), err))
			return
		}
		next := every
		if err != nil {
			next = min(every/4, time.Until(giveUp)) // retry sooner, never past giveUp
		}
		t.Reset(next)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Release stops renewing and gives the lease up. It uses its own short
// deadline so that a run stopped by Ctrl-C still releases its lease.
func (h *Held) Release() error {
	return h.release(h.lock.Release)
}

// Withdraw stops renewing and gives the lease up as if it had not been
// taken, for a run that changed nothing (Withdrawer): the record says, for
// the next run, what it said before. Backends without one release.
func (h *Held) Withdraw() error {
	if w, ok := h.lock.(Withdrawer); ok {
		return h.release(w.Withdraw)
	}
	return h.Release()
}

// release stops renewing and gives the lease up with rel.
func (h *Held) release(rel func(context.Context) error) error {
	lost := context.Cause(h.ctx)
	h.cancel(nil)
	<-h.done
	if errors.Is(lost, ErrLost) {
		return nil // nothing of ours left to release
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return rel(ctx)
}
