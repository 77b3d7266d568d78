package lease

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// memStore is the project's customdata in memory. Writes take writeDelay
// before they land (and read the map only when they land, like a slow PUT
// whose body the service applies at the end); failing makes every call
// fail.
type memStore struct {
	mu         sync.Mutex
	data       map[string]json.RawMessage
	writeDelay time.Duration
	failing    bool
	hang       bool // every read blocks until its context ends
	hangRead   int  // the read of this number (from 1) blocks until its context ends
	reads      int
	writes     int
}

func newMemStore() *memStore {
	return &memStore{data: map[string]json.RawMessage{"team": json.RawMessage(`{"owner":"ops"}`)}}
}

func (s *memStore) Customdata(ctx context.Context) (map[string]json.RawMessage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing {
		return nil, errors.New("read project customdata: 503 Service Unavailable")
	}
	s.reads++
	if s.hang || s.reads == s.hangRead {
		s.mu.Unlock()
		<-ctx.Done()
		s.mu.Lock()
		return nil, ctx.Err()
	}
	return maps.Clone(s.data), nil
}

func (s *memStore) SetCustomdata(ctx context.Context, data map[string]json.RawMessage) error {
	s.mu.Lock()
	d, failing := s.writeDelay, s.failing
	s.mu.Unlock()
	if failing {
		return errors.New("write project customdata: 503 Service Unavailable")
	}
	time.Sleep(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data = maps.Clone(data)
	s.writes++
	return nil
}

func (s *memStore) set(f func(*memStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func who(n int) Info {
	return Info{Holder: fmt.Sprintf("host-%d/100/abc", n), Host: fmt.Sprintf("host-%d", n), PID: 100, Op: "apply"}
}

func TestAcquireKeepsOtherKeysAndNamesHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		a := NewCustomdata(st, "web", CustomdataOptions{})
		if err := a.Acquire(t.Context(), who(1)); err != nil {
			t.Fatal(err)
		}
		got, _ := st.Customdata(t.Context())
		if string(got["team"]) != `{"owner":"ops"}` {
			t.Errorf("foreign customdata key changed: %s", got["team"])
		}
		if _, ok := got[KeyPrefix+"web"]; !ok {
			t.Fatalf("no lease key in %v", got)
		}
		b := NewCustomdata(st, "web", CustomdataOptions{})
		err := b.Acquire(t.Context(), who(2))
		var he *HeldError
		if !errors.As(err, &he) || he.Holder == nil || he.Holder.Holder != who(1).Holder {
			t.Fatalf("second acquire: %v, want HeldError naming host-1", err)
		}
		want := `fleet "web" is locked: apply by host-1/100/abc (pid 100 on host-1) since 2000-01-01T00:00:00Z, lease until 2000-01-01T00:01:00Z`
		if err.Error() != want {
			t.Errorf("error:\n got %s\nwant %s", err, want)
		}
		// Another fleet of the same project is independent.
		if err := NewCustomdata(st, "db", CustomdataOptions{}).Acquire(t.Context(), who(3)); err != nil {
			t.Errorf("other fleet: %v", err)
		}
		if err := a.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		got, _ = st.Customdata(t.Context())
		var rel record
		if err := json.Unmarshal(got[KeyPrefix+"web"], &rel); err != nil || rel.Holder != who(1).Holder || !rel.ReleasedAt.Equal(time.Now()) {
			t.Errorf("release did not leave the released record: %s (%v)", got[KeyPrefix+"web"], err)
		}
		if h, _ := b.Holder(t.Context()); h != nil {
			t.Errorf("a released lease is held by %v", h)
		}
		if i, _ := b.Break(t.Context()); i != nil {
			t.Errorf("unlock broke a released lease: %v", i)
		}
		if _, ok := got[KeyPrefix+"db"]; !ok || string(got["team"]) != `{"owner":"ops"}` {
			t.Errorf("release touched other keys: %v", got)
		}
	})
}

// epoch is synctest's start time.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// TestReleaseTellsTheNextRunWhen: a clean release leaves the release time;
// the next Acquire reports it (plus skew), an abandoned Acquire keeps it
// for the run after, and a fleet never locked reports nothing.
func TestReleaseTellsTheNextRunWhen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		a := NewCustomdata(st, "web", CustomdataOptions{})
		if err := a.Acquire(t.Context(), who(1)); err != nil {
			t.Fatal(err)
		}
		if p := a.Prior(); !p.Ended.IsZero() {
			t.Errorf("first lease of the fleet reports a prior end: %+v", p)
		}
		time.Sleep(10 * time.Second)
		released := time.Now()
		if err := a.Release(t.Context()); err != nil {
			t.Fatal(err)
		}
		// An acquisition abandoned (nothing to do) puts the record back.
		ctx, cancel := context.WithCancel(t.Context())
		b := NewCustomdata(st, "web", CustomdataOptions{})
		go func() { time.Sleep(time.Second); cancel() }()
		if err := b.Acquire(ctx, who(2)); err == nil {
			t.Fatal("abandoned acquire succeeded")
		}
		c := NewCustomdata(st, "web", CustomdataOptions{})
		if err := c.Acquire(t.Context(), who(3)); err != nil {
			t.Fatal(err)
		}
		if p := c.Prior(); p.How != "released" || !p.Ended.Equal(released.Add(DefaultSkew)) {
			t.Errorf("prior: %+v, want released at %s + skew", p, released)
		}
		h, err := Hold(t.Context(), NewCustomdata(st, "db", CustomdataOptions{}), who(4), HoldOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p := h.Prior(); !p.Ended.IsZero() {
			t.Errorf("Hold's prior for a new fleet: %+v", p)
		}
		_ = h.Release()
	})
}

// TestWithdrawPutsBackWhatAcquireFound: a lease taken and then given up by
// a run that changed nothing leaves the record exactly as it found it (a
// released record keeps its release time for the next run), and after an
// expired one only its finished runs; Hold's Withdraw does the same, and
// a withdrawn lease is free.
func TestWithdrawPutsBackWhatAcquireFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		a := NewCustomdata(st, "web", CustomdataOptions{})
		if err := a.Acquire(t.Context(), who(1)); err != nil {
			t.Fatal(err)
		}
		if err := a.ReleaseFinished(t.Context(), Run{ID: "r1", At: time.Now().UTC()}, nil); err != nil {
			t.Fatal(err)
		}
		released := string(st.data[KeyPrefix+"web"])
		time.Sleep(time.Minute)
		b := NewCustomdata(st, "web", CustomdataOptions{})
		if err := b.Acquire(t.Context(), who(2)); err != nil {
			t.Fatal(err)
		}
		if got := string(st.data[KeyPrefix+"web"]); !strings.Contains(got, who(2).Holder) {
			t.Fatalf("record while held: %s", got)
		}
		if err := b.Withdraw(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got := string(st.data[KeyPrefix+"web"]); got != released {
			t.Errorf("record after a withdrawal:\n%s\nwant the one found:\n%s", got, released)
		}
		if string(st.data["team"]) != `{"owner":"ops"}` {
			t.Errorf("other key changed: %s", st.data["team"])
		}
		// Withdrawn twice, or after losing the lease: nothing is written.
		writes := st.writes
		if err := b.Withdraw(t.Context()); err != nil || st.writes != writes {
			t.Errorf("second withdrawal: %v, %d writes", err, st.writes-writes)
		}

		// Found expired: only its finished runs go back.
		st.data[KeyPrefix+"web"] = json.RawMessage(`{"holder":"gone/1/x","host":"gone","pid":1,"op":"apply","since":"1999-12-31T00:00:00Z","expires":"1999-12-31T00:01:00Z","runs":[{"id":"r0","at":"1999-12-31T00:00:30Z"}]}`)
		h, err := Hold(t.Context(), NewCustomdata(st, "web", CustomdataOptions{}), who(3), HoldOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Withdraw(); err != nil {
			t.Fatal(err)
		}
		if got := string(st.data[KeyPrefix+"web"]); strings.Contains(got, "gone") || strings.Contains(got, who(3).Holder) || !strings.Contains(got, `"r0"`) {
			t.Errorf("record after withdrawing from an expired one: %s, want only its runs", got)
		}
		c := NewCustomdata(st, "web", CustomdataOptions{})
		holder, runs, err := c.State(t.Context())
		if err != nil || holder != nil || len(runs) != 1 || runs[0].ID != "r0" {
			t.Errorf("after the withdrawal: holder %v, runs %v, %v; want free with run r0", holder, runs, err)
		}
	})
}

// TestAcquireCancelledWhileReadingBackLeavesNoRecord: an Acquire whose
// read-back is cancelled in flight (an apply that finished planning with
// nothing to do, Ctrl-C) takes its record back instead of leaving it to
// block the fleet for a whole TTL.
func TestAcquireCancelledWhileReadingBackLeavesNoRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.hangRead = 2 // the read after the settle delay
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- NewCustomdata(st, "web", CustomdataOptions{}).Acquire(ctx, who(1)) }()
		time.Sleep(DefaultSettle + time.Millisecond)
		synctest.Wait() // blocked in the read-back
		cancel()
		if err := <-done; err == nil {
			t.Fatal("a cancelled Acquire succeeded")
		}
		if raw, ok := st.data[KeyPrefix+"web"]; ok {
			t.Errorf("record left behind: %s", raw)
		}
		if h, err := NewCustomdata(st, "web", CustomdataOptions{}).Holder(t.Context()); err != nil || h != nil {
			t.Errorf("after the cancelled Acquire: holder %v, %v; want free", h, err)
		}
	})
}

func TestUnrenewedLeaseExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		a := NewCustomdata(st, "web", CustomdataOptions{TTL: 30 * time.Second, Skew: 5 * time.Second})
		if err := a.Acquire(t.Context(), who(1)); err != nil {
			t.Fatal(err)
		}
		// A killed holder renews nothing. Before TTL+skew the lease holds.
		time.Sleep(30 * time.Second)
		b := NewCustomdata(st, "web", CustomdataOptions{TTL: 30 * time.Second, Skew: 5 * time.Second})
		if h, _ := b.Holder(t.Context()); h == nil {
			t.Fatal("lease expired before TTL+skew")
		}
		if err := b.Acquire(t.Context(), who(2)); err == nil {
			t.Fatal("took a lease that had not expired")
		}
		time.Sleep(6 * time.Second)
		if h, _ := b.Holder(t.Context()); h != nil {
			t.Fatalf("lease still held after TTL+skew: %v", h)
		}
		if err := b.Acquire(t.Context(), who(2)); err != nil {
			t.Fatalf("could not take the expired lease: %v", err)
		}
		// The record expired at 30 s (holder's clock): the holder stopped
		// by 30 - 30/3 + 1 s, our clock + 5 s skew: 26 s.
		if p := b.Prior(); p.How != "expired" || !p.Ended.Equal(epoch.Add(26*time.Second)) {
			t.Errorf("prior after takeover: %+v, want expired at +26s", p)
		}
		// The killed holder, were it to come back, has lost it.
		if err := a.Renew(t.Context()); !errors.Is(err, ErrLost) {
			t.Errorf("renew by the old holder: %v, want ErrLost", err)
		}
	})
}

func TestHoldRenewsUntilReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		o := CustomdataOptions{TTL: 30 * time.Second}
		h, err := Hold(t.Context(), NewCustomdata(st, "web", o), who(1), HoldOptions{})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Minute) // twenty TTLs
		if h.Context().Err() != nil {
			t.Fatalf("lease lost while renewed: %v", context.Cause(h.Context()))
		}
		b := NewCustomdata(st, "web", o)
		if err := b.Acquire(t.Context(), who(2)); err == nil {
			t.Fatal("renewed lease was taken")
		}
		if err := h.Release(); err != nil {
			t.Fatal(err)
		}
		if h.Context().Err() == nil {
			t.Error("context still live after Release")
		}
		if err := b.Acquire(t.Context(), who(2)); err != nil {
			t.Fatalf("after release: %v", err)
		}
	})
}

func TestHoldWaitsNamingHolderThenTimesOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		first, err := Hold(t.Context(), NewCustomdata(st, "web", CustomdataOptions{}), who(1), HoldOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// --lock-timeout 0: give up at once.
		start := time.Now()
		_, err = Hold(t.Context(), NewCustomdata(st, "web", CustomdataOptions{}), who(2), HoldOptions{})
		var he *HeldError
		if !errors.As(err, &he) || he.Waited != 0 || time.Since(start) > DefaultSettle {
			t.Fatalf("timeout 0: %v after %s", err, time.Since(start))
		}
		// --lock-timeout 1m: one wait line naming the holder, then give up.
		var lines []string
		start = time.Now()
		_, err = Hold(t.Context(), NewCustomdata(st, "web", CustomdataOptions{}), who(2), HoldOptions{
			Timeout: time.Minute,
			OnWait:  func(h *Info) { lines = append(lines, h.Holder) },
		})
		if !errors.As(err, &he) || he.Waited < 55*time.Second || time.Since(start) > time.Minute {
			t.Fatalf("timeout 1m: %v after %s", err, time.Since(start))
		}
		if len(lines) != 1 || lines[0] != who(1).Holder {
			t.Errorf("wait lines %q, want one naming %s", lines, who(1).Holder)
		}
		// Released while the second waits: the second gets it.
		go func() {
			time.Sleep(20 * time.Second)
			first.Release()
		}()
		second, err := Hold(t.Context(), NewCustomdata(st, "web", CustomdataOptions{}), who(2), HoldOptions{Timeout: time.Minute})
		if err != nil {
			t.Fatalf("after release: %v", err)
		}
		second.Release()
	})
}

// TestContendersExcludeEachOther runs eight applies of one fleet at once,
// each holding the lease for a while and counting how many hold it at that
// moment: never more than one, and every one gets its turn.
func TestContendersExcludeEachOther(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.writeDelay = 300 * time.Millisecond // below Settle/2: Fischer's bound holds
		var holding, maxHolding, done atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				h, err := Hold(t.Context(), NewCustomdata(st, "web", CustomdataOptions{}), who(i), HoldOptions{Timeout: time.Hour, Retry: time.Duration(i+1) * 700 * time.Millisecond})
				if err != nil {
					t.Error(err)
					return
				}
				n := holding.Add(1)
				for m := maxHolding.Load(); n > m && !maxHolding.CompareAndSwap(m, n); m = maxHolding.Load() {
				}
				time.Sleep(45 * time.Second) // longer than a renewal period
				if h.Context().Err() != nil {
					t.Errorf("holder %d lost its lease: %v", i, context.Cause(h.Context()))
				}
				holding.Add(-1)
				h.Release()
				done.Add(1)
			})
		}
		wg.Wait()
		if maxHolding.Load() != 1 || done.Load() != 8 {
			t.Fatalf("at most %d held at once, %d of 8 got a turn", maxHolding.Load(), done.Load())
		}
	})
}

// A read-to-write slower than the settle delay can cover is refused
// (and its record withdrawn), and Hold says why after a few tries instead
// of calling the fleet locked by "another run".
func TestSlowWriteIsRefusedAndNamed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		st.writeDelay = DefaultSettle // slower than the settle delay can cover
		c := NewCustomdata(st, "web", CustomdataOptions{})
		err := c.Acquire(t.Context(), who(1))
		var se *SlowError
		if !errors.As(err, &se) || se.Settle != DefaultSettle {
			t.Fatalf("slow write: %v, want a SlowError", err)
		}
		if h, err := c.Holder(t.Context()); err != nil || h != nil {
			t.Fatalf("after a refused slow attempt: holder %+v %v, want none", h, err)
		}
		_, err = Hold(t.Context(), c, who(1), HoldOptions{})
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "LKFLEET_LOCK_SETTLE") {
			t.Fatalf("Hold on a slow API: %v, want the SlowError that says what to do", err)
		}
	})
}

func TestBreakStopsTheHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		o := CustomdataOptions{TTL: 30 * time.Second}
		h, err := Hold(t.Context(), NewCustomdata(st, "web", o), who(1), HoldOptions{})
		if err != nil {
			t.Fatal(err)
		}
		broke, err := NewCustomdata(st, "web", o).Break(t.Context())
		if err != nil || broke == nil || broke.Holder != who(1).Holder {
			t.Fatalf("break: %v %v", broke, err)
		}
		<-h.Context().Done() // at the next renewal, TTL/3 later
		if cause := context.Cause(h.Context()); !errors.Is(cause, ErrLost) {
			t.Errorf("cause %v, want ErrLost", cause)
		}
		if err := h.Release(); err != nil {
			t.Errorf("release after loss: %v", err)
		}
		// The tombstone does not block the next apply.
		if err := NewCustomdata(st, "web", o).Acquire(t.Context(), who(2)); err != nil {
			t.Errorf("acquire after break: %v", err)
		}
	})
}

// TestHangingRenewalsStopTheHolderByItsBound: renewals that hang until
// their deadline (an API that accepts connections and never answers) still
// stop the holder by its record's expires - TTL/3 + 1 s, the bound a run
// taking the lease over relies on (Customdata.priorOf).
func TestHangingRenewalsStopTheHolderByItsBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		o := CustomdataOptions{TTL: 30 * time.Second}
		lk := NewCustomdata(st, "web", o)
		h, err := Hold(t.Context(), lk, who(1), HoldOptions{})
		if err != nil {
			t.Fatal(err)
		}
		expires := lk.mine.Expires
		st.set(func(s *memStore) { s.hang = true })
		<-h.Context().Done()
		if cause := context.Cause(h.Context()); !errors.Is(cause, ErrLost) {
			t.Errorf("cause %v, want ErrLost", cause)
		}
		if bound := expires.Add(-o.TTL / 3).Add(time.Second); time.Now().After(bound) {
			t.Errorf("holder stopped at %s, after its bound %s", time.Now(), bound)
		}
	})
}

func TestUnrenewableLeaseIsLostBeforeItExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		o := CustomdataOptions{TTL: 30 * time.Second}
		start := time.Now()
		h, err := Hold(t.Context(), NewCustomdata(st, "web", o), who(1), HoldOptions{})
		if err != nil {
			t.Fatal(err)
		}
		st.set(func(s *memStore) { s.failing = true })
		<-h.Context().Done()
		if cause := context.Cause(h.Context()); !errors.Is(cause, ErrLost) {
			t.Errorf("cause %v, want ErrLost", cause)
		}
		// The holder must stop before another run may take the lease.
		if el := time.Since(start); el > o.TTL {
			t.Errorf("stopped after %s, after the lease expired (%s)", el, o.TTL)
		}
	})
}

func TestCancelWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		if _, err := Hold(t.Context(), NewCustomdata(st, "web", CustomdataOptions{}), who(1), HoldOptions{}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(3 * time.Second)
			cancel()
		}()
		start := time.Now()
		_, err := Hold(ctx, NewCustomdata(st, "web", CustomdataOptions{}), who(2), HoldOptions{Timeout: time.Hour})
		if !errors.Is(err, context.Canceled) || time.Since(start) > 4*time.Second {
			t.Fatalf("cancelled wait: %v after %s", err, time.Since(start))
		}
	})
}

func TestAbandonedAcquireWithdraws(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		ctx, cancel := context.WithCancel(t.Context())
		go func() {
			time.Sleep(DefaultSettle / 2)
			cancel()
		}()
		if err := NewCustomdata(st, "web", CustomdataOptions{}).Acquire(ctx, who(1)); !errors.Is(err, context.Canceled) {
			t.Fatalf("abandoned acquire: %v", err)
		}
		got, _ := st.Customdata(t.Context())
		if _, ok := got[KeyPrefix+"web"]; ok || len(got) != 1 {
			t.Errorf("abandoned attempt left %v", got)
		}
	})
}

func TestVanishedRecordIsTakenBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		a := NewCustomdata(st, "web", CustomdataOptions{})
		if err := a.Acquire(t.Context(), who(1)); err != nil {
			t.Fatal(err)
		}
		// The simulator restarted without its customdata: nobody else
		// wrote, so the holder writes its record again and keeps the lease.
		st.set(func(s *memStore) { delete(s.data, KeyPrefix+"web") })
		if err := a.Renew(t.Context()); err != nil {
			t.Fatalf("renew without a record: %v", err)
		}
		if h, _ := a.Holder(t.Context()); h == nil || h.Holder != who(1).Holder {
			t.Fatalf("holder after taking the record back: %v", h)
		}
		// Vanished again, and a rival that read the fleet free writes its
		// record while the holder waits out the settle delay: the rival's
		// record survives, the holder has lost, and only one holds it.
		// Writes take 300 ms: both read the key empty, the rival's write
		// lands last.
		st.set(func(s *memStore) { delete(s.data, KeyPrefix+"web"); s.writeDelay = 300 * time.Millisecond })
		rival := NewCustomdata(st, "web", CustomdataOptions{})
		var rivalErr error
		var wg sync.WaitGroup
		wg.Go(func() {
			time.Sleep(100 * time.Millisecond)
			rivalErr = rival.Acquire(t.Context(), who(2))
		})
		err := a.Renew(t.Context())
		wg.Wait()
		if (err == nil) == (rivalErr == nil) {
			t.Fatalf("holder renew: %v, rival acquire: %v; want exactly one to hold", err, rivalErr)
		}
		if !errors.Is(err, ErrLost) {
			t.Errorf("holder renew: %v, want ErrLost (the later writer wins)", err)
		}
	})
}

func TestOpen(t *testing.T) {
	st := newMemStore()
	for where, want := range map[string]string{"": "*lease.Customdata", "api": "*lease.Customdata", "none": "lease.None", "etcd://127.0.0.1:1/x": "*lease.Etcd"} {
		lk, closeLock, err := Open(where, "web", st, CustomdataOptions{})
		if err != nil {
			t.Errorf("%q: %v", where, err)
			continue
		}
		if got := fmt.Sprintf("%T", lk); got != want {
			t.Errorf("%q: %s, want %s", where, got, want)
		}
		closeLock()
	}
	if _, _, err := Open("consul://x", "web", st, CustomdataOptions{}); err == nil || err.Error() != `--lock "consul://x": want api, etcd://HOST:PORT/PREFIX or none` {
		t.Errorf("unknown backend: %v", err)
	}
}

// limitedStore keeps customdata behind an HTTP server, and waits wait
// before each read leaves, as a client's rate limiter would.
type limitedStore struct {
	url  string
	wait time.Duration
}

func (s limitedStore) do(ctx context.Context, method string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func (s limitedStore) Customdata(ctx context.Context) (map[string]json.RawMessage, error) {
	time.Sleep(s.wait) // the limiter's wait, before the request leaves
	b, err := s.do(ctx, http.MethodGet, nil)
	if err != nil {
		return nil, err
	}
	m := map[string]json.RawMessage{}
	return m, json.Unmarshal(b, &m)
}

func (s limitedStore) SetCustomdata(ctx context.Context, data map[string]json.RawMessage) error {
	b, err := json.Marshal(data)
	if err == nil {
		_, err = s.do(ctx, http.MethodPut, b)
	}
	return err
}

// TestAcquireTimesTheReadFromWhenItLeft: a read that waited for the rate
// limit longer than half the settle delay before it left does not make
// the attempt slow (the race the delay covers starts when the server
// answers the read); a write that follows the read too late still does.
func TestAcquireTimesTheReadFromWhenItLeft(t *testing.T) {
	var mu sync.Mutex
	stored := []byte(`{}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPut {
			stored, _ = io.ReadAll(r.Body)
		}
		w.Write(stored)
	}))
	defer srv.Close()
	const settle = 100 * time.Millisecond
	st := limitedStore{url: srv.URL, wait: settle}
	if err := NewCustomdata(st, "web", CustomdataOptions{Settle: settle}).Acquire(t.Context(), who(1)); err != nil {
		t.Fatalf("acquire after a read that waited for the limiter: %v", err)
	}
	mu.Lock()
	stored = []byte(`{}`)
	mu.Unlock()
	slow := slowWriteStore{limitedStore: st, delay: settle}
	var se *SlowError
	if err := NewCustomdata(slow, "web", CustomdataOptions{Settle: settle}).Acquire(t.Context(), who(2)); !errors.As(err, &se) {
		t.Fatalf("acquire whose write came %s after its read: %v, want a SlowError", settle, err)
	}
}

// slowWriteStore is a limitedStore whose writes leave delay late.
type slowWriteStore struct {
	limitedStore
	delay time.Duration
}

func (s slowWriteStore) SetCustomdata(ctx context.Context, data map[string]json.RawMessage) error {
	time.Sleep(s.delay)
	return s.limitedStore.SetCustomdata(ctx, data)
}
