package packet

import (
	"context"
	"math"
	"net/http"
	"runtime"
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

// sampleSpan is the shortest span over which the achieved pace and the
// server's refill are measured: shorter spans are dominated by responses
// arriving out of order with respect to when the server counted them.
const sampleSpan = 100 * time.Millisecond

// spendSpan is how quickly tokens above the reserve are spent.
const spendSpan = 500 * time.Millisecond

// paceMargin is the share of the measured server rate left unused, so that
// jitter in when requests reach the server does not draw 429s.
const paceMargin = 0.03

// defaultThrottlePause is how long every caller pauses after a 429 that says
// neither Retry-After nor X-RateLimit-Reset.
const defaultThrottlePause = time.Second

// minPace is the slowest pace while the server's limits are known: one
// request per window would also do, but a window says nothing on a server
// whose Reset is always the next second.
const minPace = 0.5

// pacer is the one limiter every request of a Client passes through. It
// keeps a token bucket (x/time/rate, burst 1: evenly spaced requests) at a
// pace learnt from the server's answers, and a shared "not before" gate
// that a 429 closes for everyone.
//
// The server's limits are not configured: they are learnt. A server that
// sends X-RateLimit-Limit L and -Remaining rem behaves like a bucket of L
// tokens refilled at some unknown rate R. On every answer:
//
//   - Bucket full (rem ≥ L−1): we send slower than R. Every span of at
//     least 100 ms the pace we actually achieved is a lower bound of R, and
//     the estimate grows from it (×1.5 per span, ×2 where L = 1 since such
//     a server shows nothing before its 429; slower close to a pace that
//     drew a 429 before, and not at all right under it).
//   - Bucket draining (rem < L−1): the estimate falls back at once to the
//     last pace the bucket stayed full at, and over each span the refill
//     rem₁ − rem₀ + accepted, divided by the span, measures R itself.
//   - Pace = estimate × (1 − 3 %) + (rem − in flight − reserve) / 0.5 s:
//     what the bucket holds above a reserve of L/4 tokens is spent within
//     half a second, a bucket below it is refilled. That margin is what
//     keeps a 429, which closes the gate for a whole second (Retry-After
//     has one-second resolution), rare.
//   - A 429 closes the gate until Retry-After (else Reset, else one
//     second), records the pace as a ceiling and lowers the estimate: to
//     0.7× after a fast probe (R lay between the last pace and the one
//     that drew the 429), else 0.9×.
//
// A fixed-window server (Remaining falls to 0, Reset is the window's end)
// measures a refill of zero: its remaining budget is spent within half a
// second and the pace then drops to one request per window, which learns
// the new budget after the reset. A server that sends no rate headers is
// not paced (beyond --rate) until it answers 429.
type pacer struct {
	lim  *rate.Limiter
	rcap float64 // --rate cap in requests/s; 0 = none
	// spin lets the head yield in a loop for the last spinSpan of a
	// bucket of one's gap rather than sleep on a timer.
	spin bool

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
	sample    paceSample
	// est is the estimated server rate in tokens/s (0 = not yet known);
	// safe the highest achieved pace at which the bucket stayed full;
	// ceiling the pace that drew the last 429 (0 = none yet).
	est, safe, ceiling float64
	// pace is the limit last set, for Pace.
	pace float64
	// throttledAt is when the last 429 arrived; throttles counts the 429s
	// that lowered the ceiling.
	throttledAt time.Time
	throttles   int
	// spanDone is set when a measuring span completed since the gate last
	// closed: only then did the pace hold long enough to be judged.
	spanDone bool
	// grewAt is when the pace last probed above a ceiling.
	grewAt time.Time
	// winAt and winN count the requests started since winAt; used is the
	// rate of the last whole window (see Budget).
	winAt time.Time
	winN  int
	used  float64
	// one paces a server whose bucket holds one token (pacer_single.go).
	one single
	// shortOpen is when a gate that Reset shortened opens, shortSent when
	// the first request after it was released; noShort is set once that
	// request drew a 429: Reset is then not trusted again.
	shortOpen, shortSent time.Time
	noShort              bool
}

// paceSample is the state at the start of a measuring span.
type paceSample struct {
	at       time.Time
	rem      int
	accepted int64
	full     bool
	ok       bool
}

func newPacer(rcap float64, spin bool) *pacer {
	p := &pacer{rcap: rcap, spin: spin, head: make(chan struct{}, 1), changed: make(chan struct{})}
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
// counts the request as in flight and returns when it was released. Every
// started request must be matched by one call to done with that time.
//
// Only one caller at a time (the head) holds a reservation on the limiter.
// If every caller reserved at once, rate.Limiter would hand out start times
// far into the future at the pace of that moment, and a faster pace learnt
// a moment later could not pull them back. The head instead re-reserves
// whenever the pace changes, so a new pace applies to the very next request.
func (p *pacer) wait(ctx context.Context) (time.Time, error) {
	select {
	case p.head <- struct{}{}:
	case <-ctx.Done():
		return time.Time{}, ctx.Err()
	}
	defer func() { <-p.head }()
	for {
		if err := p.waitGate(ctx); err != nil {
			return time.Time{}, err
		}
		p.mu.Lock()
		changed := p.changed
		// Until the first answer tells us the server's limits, send one
		// probe at a time rather than a burst that may all be refused.
		probing := !p.learned && p.inFlight > 0
		// A bucket of one: one request at a time, each a gap after the
		// answer to the previous one (pacer_single.go).
		var spaced time.Duration
		spin := false
		if p.one.on {
			// Not while a request is in flight: release records the gap
			// of the request it lets go, which that one's answer judges.
			probing = probing || p.inFlight > 0
			if !probing {
				if at := p.one.release(time.Now()); !at.IsZero() {
					spaced = time.Until(at)
				}
			}
			spin = p.spin && p.one.gap < spinBelow
		}
		p.mu.Unlock()
		if probing {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return time.Time{}, ctx.Err()
			}
		}
		if spaced > 0 {
			if err := waitSpaced(ctx, spaced, changed, spin); err != nil {
				return time.Time{}, err
			}
			continue
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
				return time.Time{}, ctx.Err()
			}
		}
		p.mu.Lock()
		// A 429 may have closed the gate while the head waited for its
		// token: wait for the gate rather than add to a storm.
		now := time.Now()
		if now.Before(p.notBefore) {
			p.mu.Unlock()
			continue
		}
		if p.one.on && (p.inFlight > 0 || !p.one.release(now).IsZero()) {
			// The gap grew while the head waited for its token.
			p.mu.Unlock()
			r.Cancel()
			continue
		}
		p.inFlight++
		p.countStart(now)
		p.one.sent(now)
		if !p.shortOpen.IsZero() && p.shortSent.IsZero() {
			p.shortSent = now
		}
		p.mu.Unlock()
		return now, nil
	}
}

// spinSpan is how close to a bucket of one's release time the head stops
// sleeping on a timer and yields until it: the runtime's timers wake up
// to a millisecond late (its poller sleeps whole milliseconds), which is
// a fifth of the gap at 200 requests/s and hides every step of the
// gap's search below it. A timer set spinSpan early still fires early.
const spinSpan = 1200 * time.Microsecond

// spinBelow is the gap (seconds) under which the head yields rather than
// sleeps: a millisecond is then more than 1 % of the gap (at R = 20 the
// steps of 2 % are half eaten by it). Above it the yielding would cost
// more CPU than the lateness costs pace (300 requests at R = 5 would spin
// for a third of a second), and lateness is compensated instead.
const spinBelow = 0.1

// waitSpaced waits d (a bucket of one's gap), or until changed is closed
// or ctx ends: on a timer until spinSpan before the end, then yielding
// (when spin is set; else on the timer alone).
func waitSpaced(ctx context.Context, d time.Duration, changed <-chan struct{}, spin bool) error {
	if d > spinSpan || !spin {
		if spin {
			d -= spinSpan
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-changed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil // the caller re-reads the gap (and spins the rest)
	}
	for end := time.Now().Add(d); time.Now().Before(end); {
		select {
		case <-changed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		default:
			runtime.Gosched()
		}
	}
	return nil
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

// done records the end of a request released by wait at sent: h and
// status are the response's headers and status code, or nil and 0 when
// none arrived. It returns how long the gate is closed when the response
// was a 429.
func (p *pacer) done(sent time.Time, h http.Header, status int) time.Duration {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight--
	first := false
	if h == nil {
		p.one.lost()
		if !p.learned || p.one.on {
			p.notify() // let the next probe go
		}
		return 0
	}
	if !p.shortSent.IsZero() && sent.Equal(p.shortSent) {
		// The first request after a gate Reset shortened: a 429 means
		// the server's bucket was not full at its Reset after all.
		p.noShort = p.noShort || status == http.StatusTooManyRequests
		p.shortOpen, p.shortSent = time.Time{}, time.Time{}
	}
	if !p.learned {
		p.learned = true
		p.notify()
		first = true
	}
	limit, okL := headerInt(h, headerLimit)
	rem, okR := headerInt(h, headerRemaining)
	reset, okT := headerInt(h, headerReset)
	window := time.Second
	if okT {
		window = max(time.Unix(int64(reset), 0).Sub(now), time.Second)
	}
	if okL && limit == 1 {
		return p.doneOne(now, h, status, okT, reset)
	}
	if p.one.on && okL {
		// The server's bucket is no longer one token: pace by its
		// Remaining again, from the pace found so far.
		p.one.on = false
		p.notify()
	}
	if status == http.StatusTooManyRequests {
		return p.throttled(h, now, okT, reset)
	}
	if !okL || !okR || limit <= 0 {
		// A server that does not say its limits is not paced (beyond
		// --rate), except by the gate its 429s close.
		p.setPace(now, math.Inf(1))
		return 0
	}
	p.accepted++
	if p.est == 0 {
		// The first answer: the bucket refills at least L tokens per
		// window (the time until it is full again); never start below a
		// few requests per second, or learning the rate would take longer
		// than the 429 it might cost.
		p.est = max(float64(limit)/window.Seconds(), startPace(limit))
		p.safe = 0
	}
	if first {
		defer func() {
			// The limiter was unlimited for the probe: count the probe
			// against the new pace, or the next request would leave at
			// once, right behind it.
			p.lim.ReserveN(now, 1)
		}()
	}
	p.measure(now, rem, limit)
	reserve := limit / 4
	pace := p.est * (1 - paceMargin)
	if limit > 1 {
		pace += float64(rem-p.inFlight-reserve) / spendSpan.Seconds()
	}
	p.setPace(now, max(pace, minPace, 1/window.Seconds()))
	return 0
}

// throttled handles a 429: it closes the gate for every caller and lowers
// the estimate. p.mu is held.
func (p *pacer) throttled(h http.Header, now time.Time, okT bool, reset int) time.Duration {
	pause := p.closeGate(h, now, okT, reset)
	// Requests sent at the pace that drew this 429 may still be refused:
	// only the first 429 after the gate opened teaches something.
	if p.throttledAt.IsZero() || now.Sub(p.throttledAt) > pause/2 {
		at := float64(p.lim.Limit())
		switch {
		case math.IsInf(at, 1) || at <= 0:
			// Unpaced until now: start again at a few per second.
			p.est = max(p.est*0.5, 4)
		case !p.spanDone:
			// The pace had not held for one span: a burst (the first
			// requests, or callers leaving the gate together) was refused,
			// not the pace.
			p.est = max(p.est*0.9, minPace)
		default:
			// The server's rate lies between the best pace that passed
			// (safe) and this one: after a fast probe go back to a quarter
			// of the way from safe, after a 429 at a steady pace 7 %
			// under it (at B = 1, jitter in arrival times alone draws 429s
			// near R), and do not probe above it again for a while (four
			// times longer after each 429).
			first := p.ceiling == 0
			p.ceiling = at
			p.throttles++
			if first && p.safe > 0 && p.safe < at {
				p.est = p.safe + (at-p.safe)/4
			} else {
				p.est = 0.93 * at
			}
			p.est = max(p.est, minPace)
			p.safe = min(p.safe, p.est)
		}
	}
	p.spanDone = false
	p.throttledAt = now
	// Do not measure across the pause: the bucket fills while nobody
	// sends. Restart at the estimate once the gate opens.
	p.sample.ok = false
	p.setPace(now, p.est*(1-paceMargin))
	return pause
}

// closeGate closes the gate after a 429 and returns for how long: until
// Retry-After, or until X-RateLimit-Reset when that is sooner. Both are
// the server's word — Retry-After how long to wait, Reset when its bucket
// is full again, after which a request is accepted — but Retry-After
// counts whole seconds rounded up (at least one), where the bucket of a
// fast server is full again within milliseconds: Reset, a Unix second,
// halves the average pause. Reset is read on this host's clock, so it is
// trusted only while the server's Date agrees with that clock to within
// a second, and never again once the first request after a gate that
// Reset shortened drew a 429. Neither header: one second. p.mu is held.
func (p *pacer) closeGate(h http.Header, now time.Time, okT bool, reset int) time.Duration {
	pause := retryAfter(h, now)
	if okT {
		until := time.Unix(int64(reset), 0).Sub(now)
		switch {
		case pause <= 0:
			pause = until
		case until > 0 && until < pause && !p.noShort && clockAgrees(h, now):
			pause = until
			p.shortOpen, p.shortSent = now.Add(pause), time.Time{}
		}
	}
	if pause <= 0 {
		pause = defaultThrottlePause
	}
	if until := now.Add(pause); until.After(p.notBefore) {
		p.notBefore = until
	}
	return pause
}

// clockAgrees reports whether the response's Date is within a second of
// now (Date has one-second resolution: it is the server's second).
func clockAgrees(h http.Header, now time.Time) bool {
	d, err := http.ParseTime(h.Get("Date"))
	if err != nil {
		return false
	}
	skew := now.Sub(d)
	return skew > -time.Second && skew < 2*time.Second
}

// doneOne handles an answer of a server whose bucket holds one token
// (pacer_single.go). p.mu is held.
func (p *pacer) doneOne(now time.Time, h http.Header, status int, okT bool, reset int) time.Duration {
	p.one.start(now)
	date, err := http.ParseTime(h.Get("Date"))
	p.one.clock(date.Unix(), err == nil, now)
	var pause time.Duration
	if status == http.StatusTooManyRequests {
		pause = p.closeGate(h, now, okT, reset)
		p.one.refused(now)
	} else {
		p.accepted++
		p.one.accepted(now)
	}
	// The gap is kept by wait itself; the limiter only applies --rate.
	p.est = 1 / p.one.gap
	p.setPace(now, math.Inf(1))
	p.pace = min(p.est, p.pace)
	p.notify() // the head waits for this answer
	return pause
}

// measure updates the estimate from an accepted answer that left rem of
// limit tokens. p.mu is held.
func (p *pacer) measure(now time.Time, rem, limit int) {
	full := rem >= limit-1
	if !full && p.sample.ok && p.sample.full && p.ceiling == 0 {
		// The bucket began to drain: the last probe was too fast. Fall
		// back to the pace it stayed full at (a quarter of the start pace
		// if none was measured yet), then measure.
		if p.safe > 0 {
			p.est = min(p.est, p.safe)
		} else {
			p.est = max(p.est/4, minPace)
		}
	}
	s := p.sample
	if !s.ok {
		p.sample = paceSample{at: now, rem: rem, accepted: p.accepted, full: full, ok: true}
		return
	}
	dt := now.Sub(s.at)
	// A span needs enough answers that the whole tokens of Remaining and
	// the count of answers are not mostly rounding: two to see that the
	// pace held (one where L = 1: nothing else is learnt there), eight to
	// measure a refill.
	need := int64(8)
	switch {
	case limit <= 1:
		need = 1
	case full && s.full:
		need = 2
	}
	span := sampleSpan
	if full && s.full {
		span /= 2
	}
	if dt < span || (p.accepted-s.accepted < need && dt < 2*time.Second) {
		return
	}
	// Tokens the server gained over the span: what it holds more now,
	// plus what it spent on our accepted requests.
	r := max(float64(rem-s.rem)+float64(p.accepted-s.accepted), 0) / dt.Seconds()
	p.spanDone = true
	switch {
	case full && s.full:
		// A full bucket hides the refill: r is only the pace achieved, a
		// lower bound. Probe upwards from it, unless the callers did not
		// even use the pace we offered.
		p.safe = max(p.safe, r)
		if r >= 0.7*p.est {
			p.est = max(p.est, p.grow(r, now))
		}
	case !full && !s.full:
		// Below full for the whole span: r is the server's refill.
		if r < p.est {
			p.est = max(r, minPace)
		} else {
			p.est = (p.est + r) / 2
		}
	}
	p.sample = paceSample{at: now, rem: rem, accepted: p.accepted, full: full, ok: true}
}

// grow is the next probe above an achieved pace r: ×2 a span while no
// 429 came. After one, hold the pace, and probe 5 % higher every quarter
// second only after a quiet while, 4 s after the first 429 and four times
// longer after each further one: the server's limit may have been raised,
// or the 429 was a shared one, but each probe that finds the limit costs a
// second of the gate. p.mu is held.
func (p *pacer) grow(r float64, now time.Time) float64 {
	if p.ceiling == 0 {
		return r * 2
	}
	quiet := 4 * time.Second << (2 * min(p.throttles-1, 10))
	if now.Sub(p.throttledAt) > quiet && now.Sub(p.grewAt) > 250*time.Millisecond {
		p.grewAt = now
		return min(r, p.est) * 1.05
	}
	// Hold: an achieved pace above the estimate is noise (callers leaving
	// the gate together), not news.
	return p.est
}

// startPace is the first pace tried once a server's bucket size (limit)
// is known. A bucket of two or more shows it drains (Remaining falls)
// before it refuses, so a fast start is safe there; a bucket of one shows
// nothing before its 429, so the start is slow.
func startPace(limit int) float64 {
	if limit >= 2 {
		return 32
	}
	return 4
}

// setPace applies a limit, capped by --rate. p.mu is held.
func (p *pacer) setPace(now time.Time, limit float64) {
	if p.rcap > 0 {
		limit = min(limit, p.rcap)
	}
	p.pace = limit
	old := float64(p.lim.Limit())
	if math.IsInf(limit, 1) {
		p.lim.SetLimitAt(now, rate.Inf)
	} else {
		p.lim.SetLimitAt(now, rate.Limit(limit))
		burst := 1
		if p.rcap > 0 && limit >= p.rcap {
			burst = capBurst(p.rcap)
		}
		p.lim.SetBurstAt(now, burst)
	}
	// Wake the head only for changes that matter: every answer moves the
	// pace a little, and a re-reservation each time would be churn.
	if math.IsInf(old, 1) != math.IsInf(limit, 1) || math.Abs(limit-old) > 0.1*old {
		p.notify()
	}
}

// countStart counts a request start in the usage window. p.mu is held.
func (p *pacer) countStart(now time.Time) {
	p.rollWindow(now)
	p.winN++
}

// rollWindow closes the usage window once it is a second old. p.mu is
// held.
func (p *pacer) rollWindow(now time.Time) {
	if p.winAt.IsZero() {
		p.winAt = now
	}
	if el := now.Sub(p.winAt); el >= time.Second {
		p.used = float64(p.winN) / el.Seconds()
		p.winAt, p.winN = now, 0
	}
}

// Budget returns the pace the client allows itself (requests/s, +Inf when
// the server has not limited it) and how many requests per second it
// started lately (over the last whole second), so that background work
// such as polling can take what the rest leave.
func (c *Client) Budget() (pace, used float64) {
	p := c.tr.pacer
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rollWindow(time.Now())
	if !p.learned {
		return math.Inf(1), p.used
	}
	return p.pace, p.used
}

// Pace returns the pace the client currently allows itself, in requests
// per second (+Inf when the server has not limited it), so that
// background work such as polling can budget its share.
func (c *Client) Pace() float64 {
	p := c.tr.pacer
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.learned {
		return math.Inf(1)
	}
	return p.pace
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
