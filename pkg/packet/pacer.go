package packet

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate limit headers the service sends on every response.
const (
	headerLimit      = "X-RateLimit-Limit"
	headerRemaining  = "X-RateLimit-Remaining"
	headerReset      = "X-RateLimit-Reset"
	headerRetryAfter = "Retry-After"
)

// refillSampleSpan is the shortest span over which the server's refill rate
// is measured: shorter spans are dominated by responses arriving out of
// order with respect to when the server counted them.
const refillSampleSpan = 100 * time.Millisecond

// plentySpread is how quickly tokens are spent while the server has more
// than half its limit left: there is no reason to hold back, but a flood
// faster than answers come back could overshoot.
const plentySpread = 100 * time.Millisecond

// defaultThrottlePause is how long every caller pauses after a 429 that says
// neither Retry-After nor X-RateLimit-Reset.
const defaultThrottlePause = time.Second

// pacer is the one limiter every request of a Client passes through. It
// keeps a token bucket (x/time/rate) in step with what the server says is
// left, and a shared "not before" gate that a 429 closes for everyone.
//
// How the pace is chosen, on every response that carries rate headers:
//
//	avail  = Remaining − requests still in flight (they will spend tokens too)
//	window = Reset − now, at least one second (Reset has one-second resolution)
//	spread = 100ms while Remaining ≥ Limit/2, else window
//	limit  = avail/spread + refill, at least 1/window, at most the --rate cap
//	burst  = avail/2, at least 1
//
// With plenty left the client spends it quickly; as Remaining falls it
// spreads what is left until Reset, ending at the server's own refill rate,
// so capacity is neither wasted nor overdrawn. refill is measured, not
// assumed (see measureRefill): a token bucket server shows its real rate, a
// fixed-window server shows none until its window resets, and the 1/window
// floor then still tries one request after the reset to learn the new
// budget. A 429 halves the refill estimate and closes the gate until
// Retry-After (else Reset, else one second).
type pacer struct {
	lim  *rate.Limiter
	rcap float64 // --rate cap in requests/s; 0 = none

	// head admits one waiter at a time to the limiter (see wait).
	head chan struct{}

	mu sync.Mutex
	// changed is closed (and replaced) when the pace changes or the first
	// answer arrives, to wake the head.
	changed   chan struct{}
	learned   bool      // an answer has arrived: the probe phase is over
	notBefore time.Time // the gate: no request starts before this
	inFlight  int
	accepted  int64 // responses that spent a server token (not 429)
	sample    refillSample
	refill    float64 // measured server refill in tokens/s; 0 = unknown
}

type refillSample struct {
	at       time.Time
	rem      int
	accepted int64
	plenty   bool
	ok       bool
}

func newPacer(rcap float64) *pacer {
	p := &pacer{rcap: rcap, head: make(chan struct{}, 1), changed: make(chan struct{})}
	limit, burst := rate.Inf, 1
	if rcap > 0 {
		limit, burst = rate.Limit(rcap), capBurst(rcap)
	}
	p.lim = rate.NewLimiter(limit, burst)
	return p
}

// capBurst is the burst allowed under a --rate cap: one second's worth,
// so a cap of 5 never lets more than 5 requests start in any second.
func capBurst(rcap float64) int {
	return max(1, int(rcap))
}

// wait blocks until the gate is open and the limiter grants a token, then
// counts the request as in flight. Every started request must be matched by
// one call to done.
//
// Only one caller at a time (the head) holds a reservation on the limiter.
// If every caller reserved at once, rate.Limiter would hand out start times
// far into the future at the pace of that moment, and a faster pace learnt
// a moment later could not pull them back. The head instead re-reserves
// whenever the pace changes, so a new pace applies to the very next request.
func (p *pacer) wait(ctx context.Context) error {
	select {
	case p.head <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.head }()
	for {
		if err := p.waitGate(ctx); err != nil {
			return err
		}
		p.mu.Lock()
		changed := p.changed
		// Until the first answer tells us the server's limits, send one
		// probe at a time rather than a burst that may all be refused.
		probing := !p.learned && p.inFlight > 0
		p.mu.Unlock()
		if probing {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		r := p.lim.Reserve()
		if d := r.Delay(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-changed:
				t.Stop()
				r.Cancel()
				continue
			case <-ctx.Done():
				t.Stop()
				r.Cancel()
				return ctx.Err()
			}
		}
		p.mu.Lock()
		// A 429 may have closed the gate while the head waited for its
		// token: wait for the gate rather than add to a storm.
		if time.Now().Before(p.notBefore) {
			p.mu.Unlock()
			continue
		}
		p.inFlight++
		p.mu.Unlock()
		return nil
	}
}

// notify wakes the head so it re-reads the pace. p.mu is held.
func (p *pacer) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// waitGate sleeps until the shared not-before time has passed.
func (p *pacer) waitGate(ctx context.Context) error {
	for {
		p.mu.Lock()
		d := time.Until(p.notBefore)
		p.mu.Unlock()
		if d <= 0 {
			return ctx.Err()
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// done records the end of a request started by wait: h and status are the
// response's headers and status code, or nil and 0 when none arrived.
// It returns how long the gate is closed when the response was a 429.
func (p *pacer) done(h http.Header, status int) time.Duration {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	if h == nil {
		if !p.learned {
			p.notify() // let the next probe go
		}
		return 0
	}
	if !p.learned {
		p.learned = true
		p.notify()
	}
	limit, okL := headerInt(h, headerLimit)
	rem, okR := headerInt(h, headerRemaining)
	reset, okT := headerInt(h, headerReset)
	window := time.Second
	if okT {
		window = max(time.Unix(int64(reset), 0).Sub(now), time.Second)
	}

	if status == http.StatusTooManyRequests {
		pause := retryAfter(h, now)
		if pause <= 0 && okT {
			pause = time.Unix(int64(reset), 0).Sub(now)
		}
		if pause <= 0 {
			pause = defaultThrottlePause
		}
		if until := now.Add(pause); until.After(p.notBefore) {
			p.notBefore = until
		}
		// The pace was too high: halve the refill estimate, and do not
		// measure across the pause (the bucket fills while nobody sends).
		// Restart slowly once the gate opens: the callers that were held
		// back must not all leave at once.
		p.refill /= 2
		p.sample.ok = false
		p.setPace(now, p.floorAfterThrottle(window), 1)
		return pause
	}
	if !okL || !okR {
		// A server that does not say its limits is not paced (beyond
		// --rate), except by the 429s it sends.
		p.setPace(now, math.Inf(1), math.MaxInt32)
		return 0
	}
	p.accepted++
	plenty := 2*rem >= limit
	p.measureRefill(now, rem, plenty)

	// With plenty left, spend what is there quickly; with little left,
	// spread it until the server's reset.
	spread := window
	if plenty {
		spread = plentySpread
	}
	avail := rem - p.inFlight
	pace := float64(max(avail, 0))/spread.Seconds() + p.refill
	pace = max(pace, 1/window.Seconds())
	p.setPace(now, pace, max(1, avail/2))
	return 0
}

// floorAfterThrottle is the pace right after a 429: the measured refill if
// known, else one request per window so the next answer teaches us more.
func (p *pacer) floorAfterThrottle(window time.Duration) float64 {
	if p.refill > 0 {
		return p.refill
	}
	return 1 / window.Seconds()
}

// measureRefill updates the refill estimate from the tokens the server
// gained since the last sample. p.mu is held.
//
// While the bucket stays more than half full it may have been full in
// between, and a full bucket hides refill: the measurement is then only a
// lower bound (the pace we used), so the estimate is raised to twice it,
// probing upwards until the bucket drains below half. Below half the
// measurement is exact, and is believed at once when lower (never overdraw)
// or averaged in when higher.
func (p *pacer) measureRefill(now time.Time, rem int, plenty bool) {
	s := p.sample
	if !s.ok {
		p.sample = refillSample{at: now, rem: rem, accepted: p.accepted, plenty: plenty, ok: true}
		return
	}
	dt := now.Sub(s.at)
	if dt < refillSampleSpan {
		return
	}
	gained := float64(rem-s.rem) + float64(p.accepted-s.accepted)
	r := max(gained/dt.Seconds(), 0)
	switch {
	case plenty && s.plenty:
		p.refill = max(p.refill, 2*r)
	case r < p.refill || p.refill == 0:
		p.refill = r
	default:
		p.refill = (p.refill + r) / 2
	}
	p.sample = refillSample{at: now, rem: rem, accepted: p.accepted, plenty: plenty, ok: true}
}

// setPace applies a limit and burst, capped by --rate. p.mu is held.
func (p *pacer) setPace(now time.Time, limit float64, burst int) {
	if p.rcap > 0 {
		limit = min(limit, p.rcap)
		burst = min(burst, capBurst(p.rcap))
	}
	old := float64(p.lim.Limit())
	if math.IsInf(limit, 1) {
		p.lim.SetLimitAt(now, rate.Inf)
	} else {
		p.lim.SetLimitAt(now, rate.Limit(limit))
		p.lim.SetBurstAt(now, burst)
	}
	// Wake the head only for changes that matter: every answer moves the
	// pace a little, and a re-reservation each time would be churn.
	if math.IsInf(old, 1) != math.IsInf(limit, 1) || math.Abs(limit-old) > 0.1*old {
		p.notify()
	}
}

func headerInt(h http.Header, name string) (int, bool) {
	v := h.Get(name)
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return int(n), true
}

// retryAfter parses Retry-After as seconds or an HTTP date; 0 if absent.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get(headerRetryAfter)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(secs, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
}
