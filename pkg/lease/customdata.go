package lease

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptrace"
	"sync"
	"time"
)

// Defaults of CustomdataOptions.
const (
	// DefaultSettle is how long Acquire waits between writing its lease
	// and reading it back. It must exceed the time any writer takes from
	// reading the project to its write being stored.
	DefaultSettle = 2 * time.Second
	// DefaultSkew is how far apart the clocks of two lkfleet hosts may be:
	// a lease counts as expired only this long after its Expires.
	DefaultSkew = 5 * time.Second
)

// Store reads and writes the project's customdata: the whole object, key
// by key (*packet.Client implements it).
type Store interface {
	Customdata(ctx context.Context) (map[string]json.RawMessage, error)
	SetCustomdata(ctx context.Context, data map[string]json.RawMessage) error
}

// CustomdataOptions tune the customdata backend; zero fields take the
// defaults.
type CustomdataOptions struct {
	TTL    time.Duration
	Settle time.Duration
	Skew   time.Duration
	// Wrote, when set, is called each time Acquire has written its
	// record, as the settle delay begins: the caller may use the delay
	// for requests of its own, which between Acquire's read and write
	// would have made the attempt too slow to be safe.
	Wrote func()
}

// KeyPrefix starts the customdata key of every fleet's lease; the fleet
// name follows. Every other key of customdata is written back unchanged.
const KeyPrefix = "lkfleet:lease:"

// record is what the customdata key holds: a lease; the tombstone
// 'lkfleet unlock' leaves (Holder empty) so that the holder it broke sees
// at its next renewal that the lease is no longer its own; or, once its
// holder released it cleanly, the released lease: the holder's Info with
// released_at set, e.g.
//
//	{"holder":"h/42/ab12","host":"h","pid":42,"op":"apply",
//	 "since":"...","expires":"...","released_at":"2026-12-01T21:00:03Z"}
//
// A released record is free (not live); the next Acquire reads
// released_at as the time the fleet was last changed (Prior).
//
// Whatever the record is, "runs" lists the finished runs (Run) whose
// pending markers settle in-place rebuilds; every write of the record
// (acquire, renew, release, withdraw, unlock's tombstone) carries it over
// from the record it read, and only ReleaseFinished adds to it.
type record struct {
	Info
	BrokenAt   time.Time `json:"broken_at,omitzero"`
	ReleasedAt time.Time `json:"released_at,omitzero"`
	Runs       []Run     `json:"runs,omitempty"`
}

// runsOf is the finished runs r lists (none when r is nil).
func runsOf(r *record) []Run {
	if r == nil {
		return nil
	}
	return r.Runs
}

// Customdata is a fleet's lease in the project's customdata. The API has
// no compare-and-swap, so Acquire follows Fischer's timed mutual exclusion:
// read and see the lease free, write our own record, wait Settle (longer
// than any write takes), read back; only if our record survived is the
// lease ours. Renewals read before they write, so a run that lost a race
// it could not see (a write slower than Settle) finds out within TTL/3 and
// stops.
type Customdata struct {
	store Store
	fleet string
	o     CustomdataOptions

	mu    sync.Mutex
	mine  *Info   // the lease Acquire took, nil if none
	prior Prior   // what the last successful Acquire found before it
	found *record // the record that Acquire found free (nil: none)
}

// NewCustomdata returns fleet's lease in the customdata that store reads
// and writes.
func NewCustomdata(store Store, fleet string, o CustomdataOptions) *Customdata {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Settle <= 0 {
		o.Settle = DefaultSettle
	}
	if o.Skew <= 0 {
		o.Skew = DefaultSkew
	}
	return &Customdata{store: store, fleet: fleet, o: o}
}

func (c *Customdata) key() string { return KeyPrefix + c.fleet }

// TTL is how long the lease lives without renewal.
func (c *Customdata) TTL() time.Duration { return c.o.TTL }

// read returns the whole customdata and the fleet's record (nil if none or
// unreadable: a record nobody can parse protects nothing).
func (c *Customdata) read(ctx context.Context) (map[string]json.RawMessage, *record, error) {
	m, err := c.store.Customdata(ctx)
	if err != nil {
		return nil, nil, err
	}
	raw, ok := m[c.key()]
	if !ok {
		return m, nil, nil
	}
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return m, nil, nil
	}
	return m, &r, nil
}

// write stores r under the fleet's key (nil deletes it), keeping every
// other key of m.
func (c *Customdata) write(ctx context.Context, m map[string]json.RawMessage, r *record) error {
	out := make(map[string]json.RawMessage, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	if r == nil {
		delete(out, c.key())
	} else {
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		out[c.key()] = b
	}
	return c.store.SetCustomdata(ctx, out)
}

// live reports whether r is a lease that has not expired at now.
func (c *Customdata) live(r *record, now time.Time) bool {
	return r != nil && r.Holder != "" && r.ReleasedAt.IsZero() && !now.After(r.Expires.Add(c.o.Skew))
}

// priorOf is what the record an Acquire found free (r, read at now) says
// about when its holder last changed the fleet.
//
//   - Released: the holder released the lease at ReleasedAt, after its last
//     change (plus Skew: ReleasedAt is on the holder's clock).
//   - Expired (a killed run, or one cut off from the API): its last
//     renewal attempt began no later than Expires - TTL (+1 s: Expires is
//     rounded down to the second), and Held.renew stops acting TTL - TTL/3
//     after that start, so the holder stopped by Expires - TTL/3 + 1 s on
//     its clock, Expires - TTL/3 + 1 s + Skew on ours. We take the lease
//     only after Expires + Skew, so that bound is at least TTL/3 - 1 s
//     (19 s at the defaults) in the past: an apply whose list lag is below
//     that never waits after a takeover, and one with a longer lag waits
//     only until bound + lag (never less than needed, never more than the
//     full lag).
//   - Anything else (no record, unlock's tombstone, whose broken holder
//     may act until its next renewal): unknown, the full wait.
func (c *Customdata) priorOf(r *record) Prior {
	switch {
	case r == nil || r.Holder == "":
		return Prior{}
	case !r.ReleasedAt.IsZero():
		return Prior{Ended: r.ReleasedAt.Add(c.o.Skew), How: "released"}
	default:
		return Prior{Ended: r.Expires.Add(-c.o.TTL / 3).Add(time.Second + c.o.Skew), How: "expired"}
	}
}

// Prior says what the last successful Acquire found before it.
func (c *Customdata) Prior() Prior {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prior
}

// timedRead reads the customdata like read, and also returns when the
// read left: what the settle delay must cover is the time from the read
// the server answered to the write that follows, not the time the read
// waited for the client's rate limit. A store that sends its read over
// HTTP reports that moment through the request's httptrace hook (the last
// attempt's, when the client retried); any other store is timed from the
// call.
func (c *Customdata) timedRead(ctx context.Context) (map[string]json.RawMessage, *record, time.Time, error) {
	var mu sync.Mutex
	sent := time.Now()
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteHeaders: func() {
			mu.Lock()
			sent = time.Now()
			mu.Unlock()
		},
	})
	m, r, err := c.read(ctx)
	mu.Lock()
	defer mu.Unlock()
	return m, r, sent, err
}

// Acquire takes the lease for me or returns a *HeldError.
func (c *Customdata) Acquire(ctx context.Context, me Info) error {
	start := time.Now()
	m, r, sent, err := c.timedRead(ctx)
	if err != nil {
		return fmt.Errorf("lock fleet %q: %w", c.fleet, err)
	}
	if c.live(r, start) && r.Holder != me.Holder {
		return &HeldError{Fleet: c.fleet, Holder: &r.Info}
	}
	me.Since = start.UTC().Truncate(time.Second)
	me.Expires = start.Add(c.o.TTL).UTC().Truncate(time.Second)
	if err := c.write(ctx, m, &record{Info: me, Runs: runsOf(r)}); err != nil {
		// The write may have landed all the same (an answer lost, the
		// run cancelled while it was in flight): take it back, or it
		// would block the fleet for a whole TTL.
		_ = c.withdraw(ctx, me.Holder, r)
		return fmt.Errorf("lock fleet %q: %w", c.fleet, err)
	}
	if took := time.Since(sent); took > c.o.Settle/2 {
		// Our own read-to-write took too long for the settle delay to
		// cover it: a rival that read the lease free meanwhile may not
		// see our record. Take it back and count the attempt as
		// contended.
		_ = c.withdraw(ctx, me.Holder, r)
		return &SlowError{Fleet: c.fleet, Took: took, Settle: c.o.Settle}
	}
	if c.o.Wrote != nil {
		c.o.Wrote()
	}
	t := time.NewTimer(c.o.Settle)
	select {
	case <-ctx.Done():
		t.Stop()
		// Abandoned (Ctrl-C, or apply found nothing to do): our record
		// must not block the next run for a whole TTL.
		_ = c.withdraw(ctx, me.Holder, r)
		return context.Cause(ctx)
	case <-t.C:
	}
	prev := r
	_, r, err = c.read(ctx)
	if err != nil {
		// Our record stands (the read back failed, or the run was
		// cancelled while it was in flight): take it back.
		_ = c.withdraw(ctx, me.Holder, prev)
		return fmt.Errorf("lock fleet %q: %w", c.fleet, err)
	}
	if r == nil || r.Holder != me.Holder {
		// Another writer came after us: it wins, we back off.
		var h *Info
		if r != nil && r.Holder != "" {
			h = &r.Info
		}
		return &HeldError{Fleet: c.fleet, Holder: h}
	}
	c.mu.Lock()
	c.mine = &me
	c.prior = c.priorOf(prev)
	c.found = prev
	c.mu.Unlock()
	return nil
}

// withdraw puts back prev (nil: deletes the key) if the fleet's key holds
// holder's record, with a short deadline of its own (ctx may be the reason
// for withdrawing). Putting back a released record keeps what it says
// about the fleet's last change for the next run: an apply that found
// nothing to do changed nothing.
func (c *Customdata) withdraw(ctx context.Context, holder string, prev *record) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	m, r, err := c.read(ctx)
	if err != nil || r == nil || r.Holder != holder {
		return err
	}
	if prev != nil && prev.ReleasedAt.IsZero() {
		// An expired lease or a tombstone protects nothing any more;
		// the finished runs it carried stay.
		prev = &record{Runs: prev.Runs}
		if len(prev.Runs) == 0 {
			prev = nil
		}
	}
	return c.write(ctx, m, prev)
}

// Withdraw gives up the lease Acquire took as if it had never been taken,
// for a run that changed nothing: the record Acquire found free goes back
// (see withdraw), so the next run still reads when the fleet last
// changed. Nothing is written when the lease is no longer ours.
func (c *Customdata) Withdraw(ctx context.Context) error {
	c.mu.Lock()
	mine, found := c.mine, c.found
	c.mine, c.found = nil, nil
	c.mu.Unlock()
	if mine == nil {
		return nil
	}
	if err := c.withdraw(ctx, mine.Holder, found); err != nil {
		return fmt.Errorf("withdraw lease of fleet %q: %w", c.fleet, err)
	}
	return nil
}

// Renew extends the lease: read, check that it is still ours, write a new
// expiry. Another holder's record, or the tombstone of 'lkfleet unlock',
// means the lease is lost. No record at all (the simulator restarted
// without it, another fleet's read-modify-write dropped it) is taken back
// the way Acquire takes a free lease — write, settle, read back — since a
// rival may have read the fleet free meanwhile: whichever record survives
// the settle delay holds the lease.
func (c *Customdata) Renew(ctx context.Context) error {
	c.mu.Lock()
	mine := c.mine
	c.mu.Unlock()
	if mine == nil {
		return fmt.Errorf("renew lease of fleet %q: %w (not held)", c.fleet, ErrLost)
	}
	m, r, sent, err := c.timedRead(ctx)
	if err != nil {
		return fmt.Errorf("renew lease of fleet %q: %w", c.fleet, err)
	}
	if r != nil && r.Holder != mine.Holder {
		return c.lost(r)
	}
	next := *mine
	next.Expires = time.Now().Add(c.o.TTL).UTC().Truncate(time.Second)
	if err := c.write(ctx, m, &record{Info: next, Runs: runsOf(r)}); err != nil {
		return fmt.Errorf("renew lease of fleet %q: %w", c.fleet, err)
	}
	if r == nil {
		if time.Since(sent) > c.o.Settle/2 {
			_ = c.withdraw(ctx, mine.Holder, nil)
			return c.lost(nil)
		}
		if !sleep(ctx, c.o.Settle) {
			return fmt.Errorf("renew lease of fleet %q: %w", c.fleet, context.Cause(ctx))
		}
		if _, r, err = c.read(ctx); err != nil {
			return fmt.Errorf("renew lease of fleet %q: %w", c.fleet, err)
		}
		if r == nil || r.Holder != mine.Holder {
			return c.lost(r)
		}
	}
	c.mu.Lock()
	c.mine = &next
	c.mu.Unlock()
	return nil
}

// lost forgets the lease and says who has it now (r, nil if nobody).
func (c *Customdata) lost(r *record) error {
	c.mu.Lock()
	c.mine = nil
	c.mu.Unlock()
	switch {
	case r == nil:
		return fmt.Errorf("fleet %q: %w: its record vanished from the project's customdata and could not be taken back", c.fleet, ErrLost)
	case !r.ReleasedAt.IsZero():
		return fmt.Errorf("fleet %q: %w: released by %s at %s", c.fleet, ErrLost, r.Info, r.ReleasedAt.UTC().Format(time.RFC3339))
	case r.Holder == "" && r.BrokenAt.IsZero():
		// Only the finished runs are left: an abandoned attempt withdrew.
		return fmt.Errorf("fleet %q: %w: its record was replaced by a withdrawn attempt's", c.fleet, ErrLost)
	case r.Holder == "":
		return fmt.Errorf("fleet %q: %w: broken by 'lkfleet unlock' at %s", c.fleet, ErrLost, r.BrokenAt.UTC().Format(time.RFC3339))
	default:
		return fmt.Errorf("fleet %q: %w: now held by %s", c.fleet, ErrLost, r.Info)
	}
}

// Release replaces the fleet's record, if the lease there is still ours,
// with the released record (see record): the next run reads from it when
// this one made its last change. Release comes after the run's last
// request, so its time is a bound on that change.
func (c *Customdata) Release(ctx context.Context) error {
	return c.release(ctx, nil)
}

// ReleaseFinished releases the lease like Release and records run as
// finished (see Recorder), in the same write.
func (c *Customdata) ReleaseFinished(ctx context.Context, run Run, keep []string) error {
	return c.release(ctx, func(prev []Run) []Run { return nextRuns(prev, run, keep) })
}

// release writes the released record; runs, when not nil, turns the
// finished runs read into those written.
func (c *Customdata) release(ctx context.Context, runs func([]Run) []Run) error {
	c.mu.Lock()
	mine := c.mine
	c.mine = nil
	c.mu.Unlock()
	if mine == nil {
		return nil
	}
	m, r, err := c.read(ctx)
	if err != nil {
		return fmt.Errorf("release lease of fleet %q: %w", c.fleet, err)
	}
	if r == nil || r.Holder != mine.Holder {
		return nil
	}
	rel := &record{Info: *mine, ReleasedAt: time.Now().UTC(), Runs: r.Runs}
	if runs != nil {
		rel.Runs = runs(r.Runs)
	}
	if err := c.write(ctx, m, rel); err != nil {
		return fmt.Errorf("release lease of fleet %q: %w", c.fleet, err)
	}
	return nil
}

// Holder returns the live lease, nil if the fleet is free.
func (c *Customdata) Holder(ctx context.Context) (*Info, error) {
	h, _, err := c.State(ctx)
	return h, err
}

// State returns the live lease (nil if the fleet is free) and the
// finished runs, from one read of the customdata.
func (c *Customdata) State(ctx context.Context) (*Info, []Run, error) {
	_, r, err := c.read(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read lease of fleet %q: %w", c.fleet, err)
	}
	if !c.live(r, time.Now()) {
		return nil, runsOf(r), nil
	}
	return &r.Info, r.Runs, nil
}

// Break replaces whatever lease the fleet has with a tombstone, so that a
// holder still running stops at its next renewal, and returns what it
// replaced (nil if there was no lease).
func (c *Customdata) Break(ctx context.Context) (*Info, error) {
	m, r, err := c.read(ctx)
	if err != nil {
		return nil, fmt.Errorf("break lease of fleet %q: %w", c.fleet, err)
	}
	if r == nil || r.Holder == "" || !r.ReleasedAt.IsZero() {
		return nil, nil
	}
	// The tombstone keeps the finished runs: breaking a lease says nothing
	// about what its holder (or any earlier run) finished.
	tomb := &record{BrokenAt: time.Now().UTC().Truncate(time.Second), Runs: r.Runs}
	if err := c.write(ctx, m, tomb); err != nil {
		return nil, fmt.Errorf("break lease of fleet %q: %w", c.fleet, err)
	}
	return &r.Info, nil
}
