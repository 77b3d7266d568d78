package packet

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// runWorkers makes n calls of Project from workers goroutines and returns
// how long they took and how many failed.
func runWorkers(t *testing.T, c *Client, n, workers int) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	jobs := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := 0
	for range workers {
		wg.Go(func() {
			for range jobs {
				if _, err := c.List(context.Background()); err != nil {
					mu.Lock()
					failed++
					mu.Unlock()
					t.Log(err)
				}
			}
		})
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return time.Since(start), failed
}

// TestPacerUsesServerCapacity drives a token bucket server (rate R, burst
// B) with more requests than it allows at once. The client must finish
// near the physical bound (N−B)/R — no capacity left unused — while
// tripping the limit on at most 1% of requests.
func TestPacerUsesServerCapacity(t *testing.T) {
	for _, tc := range []struct {
		name      string
		resetFull bool
		workers   int
		r, b      float64
		latency   time.Duration
		// n is large enough that learning the rate (a few tenths of a
		// second) is small against the bound.
		n int
	}{
		{"reset when full, 16 workers", true, 16, 50, 20, 20 * time.Millisecond, 500},
		{"reset next second, 16 workers", false, 16, 50, 20, 20 * time.Millisecond, 500},
		{"reset when full, 64 workers", true, 64, 50, 20, 20 * time.Millisecond, 500},
		{"simulator defaults, slow answers", true, 32, 20, 40, 150 * time.Millisecond, 500},
		{"fast server", true, 32, 400, 20, 5 * time.Millisecond, 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := tc.n
				r, b := tc.r, tc.b
				bk := newBucket(&fakeAPI{}, r, b, tc.resetFull)
				c := memClient(t, bk, tc.latency, nil)
				took, failed := runWorkers(t, c, n, tc.workers)
				bound := time.Duration((float64(n)-b)/r*float64(time.Second)) + tc.latency
				st := c.Stats()
				t.Logf("took %v (bound %v, ratio %.3f), %+v", took, bound, float64(took)/float64(bound), st)
				if failed != 0 {
					t.Errorf("%d calls failed", failed)
				}
				if took > bound*110/100 {
					t.Errorf("took %v, want <= 1.10 × %v: capacity left unused", took, bound)
				}
				if st.Throttled > n/100 {
					t.Errorf("%d answers were 429, want <= %d", st.Throttled, n/100)
				}
				if st.Requests != n+st.Throttled {
					t.Errorf("requests %d, want %d calls + %d resent after 429", st.Requests, n, st.Throttled)
				}
			})
		})
	}
}

// TestRateCap checks that --rate caps the pace below what the server allows.
func TestRateCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := memClient(t, &fakeAPI{}, time.Millisecond, func(cfg *Config) { cfg.Rate = 10 })
		took, failed := runWorkers(t, c, 60, 8)
		if failed != 0 {
			t.Fatalf("%d calls failed", failed)
		}
		// 10 at once (a second's worth), then 10/s: 50 more take 5s.
		if took < 5*time.Second || took > 5100*time.Millisecond {
			t.Errorf("60 calls at --rate 10 took %v, want 5s", took)
		}
	})
}

// stormServer answers 429 with Retry-After: 2 to every request during the
// first storm seconds, then serves; it records when requests arrive.
type stormServer struct {
	next  http.Handler
	until time.Time

	mu       sync.Mutex
	arrivals []time.Time
	refused  int
}

func (s *stormServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.mu.Lock()
	s.arrivals = append(s.arrivals, now)
	storm := now.Before(s.until)
	if storm {
		s.refused++
	}
	s.mu.Unlock()
	if storm {
		w.Header().Set("Retry-After", "2")
		writeJSON(w, 429, map[string]any{"errors": []string{"Rate limit exceeded"}})
		return
	}
	s.next.ServeHTTP(w, r)
}

// TestThrottleStormDrains: a 429 pauses every caller (not only the refused
// one) until Retry-After, and when the storm passes every call completes:
// nothing is lost, and the refused calls are re-sent.
func TestThrottleStormDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		s := &stormServer{next: &fakeAPI{}, until: start.Add(3 * time.Second)}
		c := memClient(t, s, 10*time.Millisecond, nil)
		took, failed := runWorkers(t, c, 200, 20)
		if failed != 0 {
			t.Fatalf("%d of 200 calls were lost in the storm", failed)
		}
		st := c.Stats()
		if st.Throttled != s.refused || st.Requests != 200+s.refused || st.Retries != s.refused {
			t.Errorf("stats %+v, server refused %d", st, s.refused)
		}
		// The first wave of 20 is refused at once; the gate then holds every
		// worker for 2s, one probe per Retry-After goes out, so the storm
		// costs a handful of 429s, not one per worker per second.
		if s.refused > 20+2*20 {
			t.Errorf("%d requests refused: callers did not wait for Retry-After together", s.refused)
		}
		// Nothing was sent within 2s after the first 429 other than the
		// requests already in flight with it.
		early := 0
		for _, a := range s.arrivals {
			if a.After(start.Add(100*time.Millisecond)) && a.Before(start.Add(2*time.Second)) {
				early++
			}
		}
		if early != 0 {
			t.Errorf("%d requests sent while the gate was closed", early)
		}
		if took > 10*time.Second {
			t.Errorf("storm drained in %v, want well under 10s", took)
		}
	})
}

// TestPacerUnknownLimits drives servers whose limits the client is not
// told, R ∈ {5, 20, 200} requests/s with buckets of B ∈ {1, 2, 5, 20}, with
// 300 calls from 10 workers. The client must learn each rate from the
// answers: few 429s (each closes the gate for a second) and, over the
// request bound (N−B)/R, at most the slack a 429 and the probe cost.
func TestPacerUnknownLimits(t *testing.T) {
	for _, r := range []float64{5, 20, 200} {
		for _, b := range []float64{1, 2, 5, 20} {
			t.Run(fmt.Sprintf("R=%g,B=%g", r, b), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					const n = 300
					bk := newBucket(&fakeAPI{}, r, b, true)
					c := memClient(t, bk, 3*time.Millisecond, nil)
					took, failed := runWorkers(t, c, n, 10)
					bound := time.Duration((n - b) / r * float64(time.Second))
					st := c.Stats()
					t.Logf("R=%g B=%g took %v (bound %v, ratio %.3f), %+v", r, b, took, bound, float64(took)/float64(bound), st)
					if failed != 0 {
						t.Errorf("%d calls failed", failed)
					}
					// A bucket of one refuses once while the pace doubles
					// and once more while it steps down to R; nothing
					// else may.
					max429 := n / 100
					if b == 1 {
						max429 = 2
					}
					if st.Throttled > max429 {
						t.Errorf("%d answers were 429, want <= %d", st.Throttled, max429)
					}
					// What learning may cost: B ≥ 2 shows the bucket
					// draining before it refuses, and 300 calls at R
					// spend at most 0.2 s finding R; B = 1 shows nothing
					// but its 429s, each closing the gate until the next
					// Reset second, and the steps down to R.
					allow := bound*110/100 + 200*time.Millisecond
					if b == 1 {
						allow = bound*110/100 + 2*time.Second
					}
					if took > allow {
						t.Errorf("took %v, want <= %v", took, allow)
					}
				})
			})
		}
	}
}

// resetServer refuses the requests whose numbers (from 1) are in refuse
// with Retry-After: 1 and X-RateLimit-Reset at the next whole second,
// serves the others, and records when each arrived.
type resetServer struct {
	next   http.Handler
	refuse map[int]bool

	mu       sync.Mutex
	arrivals []time.Time
}

func (s *resetServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.mu.Lock()
	s.arrivals = append(s.arrivals, now)
	refuse := s.refuse[len(s.arrivals)]
	s.mu.Unlock()
	h := w.Header()
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	h.Set("X-RateLimit-Limit", "20")
	h.Set("X-RateLimit-Remaining", "10")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Unix()+1, 10))
	if refuse {
		h.Set("Retry-After", "1")
		writeJSON(w, 429, map[string]any{"errors": []string{"Rate limit exceeded"}})
		return
	}
	s.next.ServeHTTP(w, r)
}

// TestGateEndsAtReset: a 429 whose X-RateLimit-Reset (the second at which
// the server's bucket is full again) comes before its Retry-After opens
// the gate at Reset. Once the first request after such a gate is refused
// too, Reset is not trusted again and the gates last Retry-After.
func TestGateEndsAtReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &resetServer{next: &fakeAPI{}, refuse: map[int]bool{2: true, 3: true, 5: true}}
		c := memClient(t, s, 0, nil)
		// 1 passes at 0.3 s; 2 is refused at 0.3 s, Reset 1 s: 3 goes at
		// 1 s, not 1.3 s, and is refused again: Reset is not trusted any
		// more. 4 goes a Retry-After later, at 2 s. 5, at 2.3 s, is
		// refused with Reset 3 s, and 6 goes a whole Retry-After later,
		// at 3.3 s.
		time.Sleep(300 * time.Millisecond)
		start := time.Unix(time.Now().Unix(), 0)
		for i := range 3 {
			if i == 2 {
				time.Sleep(300 * time.Millisecond)
			}
			if _, err := c.List(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		want := []time.Duration{300 * time.Millisecond, 300 * time.Millisecond, time.Second, 2 * time.Second, 2300 * time.Millisecond, 3300 * time.Millisecond}
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.arrivals) != len(want) {
			t.Fatalf("%d requests, want %d", len(s.arrivals), len(want))
		}
		for i, a := range s.arrivals {
			if got := a.Sub(start); got < want[i] || got > want[i]+50*time.Millisecond {
				t.Errorf("request %d at %v, want %v", i+1, got, want[i])
			}
		}
	})
}

// TestBucketOfOneSerial: against a bucket of one, requests go one at a
// time (a second in flight could only be refused or hide when the server
// counted the first), and once R is found the pace holds without 429s.
func TestBucketOfOneSerial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bk := newBucket(&fakeAPI{}, 20, 1, true)
		var mu sync.Mutex
		flight, peak := 0, 0
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			flight++
			peak = max(peak, flight)
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
			bk.ServeHTTP(w, r)
			mu.Lock()
			flight--
			mu.Unlock()
		})
		c := memClient(t, h, time.Millisecond, nil)
		runWorkers(t, c, 100, 8)
		first := c.Stats().Throttled
		took, failed := runWorkers(t, c, 200, 8)
		st := c.Stats()
		if failed != 0 {
			t.Errorf("%d calls failed", failed)
		}
		if peak != 1 {
			t.Errorf("%d requests in flight at once, want 1", peak)
		}
		if first > 2 || st.Throttled != first {
			t.Errorf("%d 429s while learning R (want <= 2), %d after", first, st.Throttled-first)
		}
		// 200 calls at R = 20 take 10 s; the gaps settle within 4 % of
		// 1/R plus the answer's time.
		if took > 10700*time.Millisecond {
			t.Errorf("200 calls at R = 20 took %v, want <= 10.7 s", took)
		}
	})
}

// TestBucketOfOneRaised: a bucket of one whose limit is raised from 20/s
// to 40/s while the client settled at 20/s is found out by the probe two
// minutes later, and the pace follows.
func TestBucketOfOneRaised(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bk := newBucket(&fakeAPI{}, 20, 1, true)
		c := memClient(t, bk, time.Millisecond, nil)
		runWorkers(t, c, 100, 4)
		bk.mu.Lock()
		bk.rate = 40
		bk.mu.Unlock()
		time.Sleep(3 * time.Minute)
		runWorkers(t, c, 100, 4) // the probe, and finding 40/s
		took, failed := runWorkers(t, c, 200, 4)
		if failed != 0 {
			t.Errorf("%d calls failed", failed)
		}
		// At 20/s 200 calls take 10 s; at 40/s, 5 s.
		if took > 6*time.Second {
			t.Errorf("200 calls after the limit went to 40/s took %v, want <= 6 s", took)
		}
		if st := c.Stats(); st.Throttled > 5 {
			t.Errorf("%d 429s, want <= 5 (two per bracket, one probe)", st.Throttled)
		}
	})
}

// TestBucketOfOneMeasuresTheRequestInFlight: against a bucket of one, the
// gap an answer judges is the one its request left at. A caller that
// queues while that request is in flight must not measure it again later:
// the accepted gap would then look longer than it was, and no step below
// it would ever lower the best gap.
func TestBucketOfOneMeasuresTheRequestInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(0, false)
		answer := func(sent time.Time) {
			h := http.Header{}
			h.Set(headerLimit, "1")
			h.Set(headerRemaining, "0")
			h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
			p.done(sent, h, http.StatusOK)
		}
		ctx := context.Background()
		first, err := p.wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		answer(first) // the server's bucket holds one token: gaps from here
		second, err := p.wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if third, err := p.wait(ctx); err == nil {
				answer(third)
			}
		}()
		time.Sleep(3 * time.Millisecond) // the third caller waits meanwhile
		answer(second)
		<-done
		p.mu.Lock()
		hi := p.one.hi
		p.mu.Unlock()
		// The second request left singleStart after the first answer;
		// the third, half that after the second's.
		if want := singleStart / 2; hi < want-1e-6 || hi > want+1e-6 {
			t.Errorf("best accepted gap %.6f s, want %.6f s", hi, want)
		}
	})
}

// TestBucketOfOneCheapBeforeClocked: until Date has told the server's
// clock, a probe is cheap only in the window before a whole second of our
// own clock (a server whose Date agrees is taken to share it); once Date
// places the server half a second off, the window moves with it.
func TestBucketOfOneCheapBeforeClocked(t *testing.T) {
	s := single{on: true, hi: 0.005, gap: 0.005}
	at := func(ms int) time.Time { return time.Unix(100, int64(ms)*int64(time.Millisecond)) }
	if s.cheap(at(300)) {
		t.Error("unclocked: a probe 0.7 s before the next second is cheap, want not")
	}
	if !s.cheap(at(700)) {
		t.Error("unclocked: a probe 0.3 s before the next second is not cheap, want cheap")
	}
	s.thLo, s.thHi, s.clocked = 0.49, 0.51, true // the server's clock is ours + 0.5 s
	if !s.cheap(at(200)) || s.cheap(at(700)) {
		t.Error("clocked 0.5 s ahead: want 0.2 s past our second cheap and 0.7 s past not")
	}
}

// TestBucketOfOneDescendsOnTime: below 20 ms the gap under the best
// accepted one follows a timed descent. Before any refusal it steps at
// once, by what takes it to a quarter of the round's first gap where the
// cheap window of the coming second ends (our clock, the server taken to
// share it within clockGuess), or of the next second's once this one's
// has passed. After a refusal, with R bracketed to 4 %, requests go at
// the held gap until steps of 1 % fit, then step towards lo. Longer gaps
// still halve at once.
func TestBucketOfOneDescendsOnTime(t *testing.T) {
	at := func(ms float64) time.Time { return time.Unix(100, int64(ms*float64(time.Millisecond))) }
	const hi, lo = 0.0156, 0.005
	descent := func(hi, f, left float64) float64 { return max(hi*(1-min((hi-f)/left, singleDescendMax)), f) }
	for _, tc := range []struct {
		name   string
		hi, lo float64
		base   float64 // the last answer, ms past the second
		want   float64 // the gap the next request goes at (s)
	}{
		{"0.7 s before the second", hi, 0, 300, descent(hi, hi/4, 0.7-hi-clockGuess)},
		{"0.3 s before", hi, 0, 700, descent(hi, hi/4, 0.3-hi-clockGuess)},
		{"past the window", hi, 0, 990, descent(hi, hi/4, 1.01-hi-clockGuess)},
		{"bracketed, early", 0.0052, lo, 300, 0.0052*(1+singleMargin) + singleSlack},
		{"bracketed, at the window's end", 0.0052, lo, 975, descent(0.0052, lo, 0.025-0.0052-clockGuess)},
		{"a long gap halves", 0.0625, 0, 300, 0.03125},
	} {
		s := single{on: true, hi: tc.hi, lo: tc.lo, base: at(tc.base), margin: singleMargin, slack: singleSlack}
		s.choose(at(tc.base))
		got := s.release(at(tc.base)).Sub(at(tc.base)).Seconds()
		if math.Abs(got-tc.want) > 1e-6 {
			t.Errorf("%s: last gap %.4f s, lo %.4f s, answer at +%.0f ms: next gap %.5f s, want %.5f s", tc.name, tc.hi, tc.lo, tc.base, got, tc.want)
		}
	}
	// The descent before a refusal is a step below hi whatever the
	// moment, and never reaches the floor before the window's end.
	for _, ms := range []float64{0, 300, 700, 950, 990} {
		s := single{on: true, hi: hi, base: at(ms), margin: singleMargin, slack: singleSlack}
		s.choose(at(ms))
		if d := s.release(at(ms)).Sub(at(ms)).Seconds(); d >= hi || d <= hi/4 {
			t.Errorf("answer at +%.0f ms: descent gap %.5f s outside (hi/4, hi)", ms, d)
		}
	}
}
