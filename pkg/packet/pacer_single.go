package packet

import (
	"math"
	"time"
)

// Pacing against a bucket of one token (X-RateLimit-Limit: 1).
//
// Such a server shows nothing before its 429: Remaining is 0 after every
// accepted request, so the bucket-level measurements of pacer.measure see
// no headroom and no drain. What it does show exactly is the rule it
// applies: a request is accepted if and only if the server's refill time
// 1/R has passed since it counted the last request it accepted.
//
// single therefore sends one request at a time and releases the next one
// gap after the answer to the previous one arrived. The server counted the
// previous request before that answer left, so it sees the two at least
// gap apart whatever the network and the handler did meanwhile, and every
// answer measures 1/R against gap: refused proves 1/R > gap; accepted says
// 1/R ≤ gap plus the time the previous request spent between being
// counted and answered, which is what pacing at that gap will see again.
// From that bracket (lo, hi]:
//
//   - Nothing refused yet: halve the gap after each accepted request
//     (double the pace) from a slow start, down to 20 ms; below that a
//     timed descent (see singleDescendBelow) finds the refusal.
//   - hi more than 2.5 % above lo: step the gap 2 % below hi; each
//     accepted step lowers hi, the first refusal raises lo to within 2 %
//     of hi. From the first refusal on, finding R costs one more 429
//     (a third would already be 1 % of 300 requests), and the smaller
//     the step, the closer to R the pace settles: at R = 5 a step takes
//     0.2 s, and every 1 % the settled pace stays under R costs 0.6 s
//     over 300 requests.
//   - Bracketed: gap hi × (1 + margin) + slack. A refusal at that gap
//     (not at a probe) proves 1/R above it: hi moves above the refused
//     gap, the margin doubles and the slack grows by its first value (at
//     R = 200 a doubled slack alone would be a fifth of the gap).
//   - After two minutes (then four times longer after each) one probe 10 %
//     below the bracket checks whether the server's limit was raised;
//     accepted, the gap halves again until the next refusal.
//
// Above 20 ms, every step below hi after the first refusal waits for a
// moment where a 429 would close the gate only briefly (see cheap); the
// requests between go at hi. Below 20 ms the steps follow a timed descent
// instead. A refused request closes the gate (until Reset or
// Retry-After), after which the bucket is full again: the next request
// goes without a gap.
type single struct {
	on bool
	// base is when the answer to the last accepted request arrived (zero:
	// none since the gate last closed, or the last request got no answer).
	base time.Time
	// lo and hi bracket the server's refill time in seconds (hi 0: no
	// request accepted yet at a measured gap; lo 0: none refused).
	lo, hi float64
	// margin (relative) and slack (seconds) keep the settled gap off the
	// edge.
	margin, slack float64
	// probeAt is when the next probe below hi may go; probes counts them.
	probeAt time.Time
	probes  int
	// probeDue is set from probeAt until a probe went (it waits for a
	// cheap moment); sentProbe says the request in flight is a step
	// below hi.
	probeDue, sentProbe bool
	// gap is the gap chosen for the next request, in seconds; measured
	// whether the request in flight was released at a known gap, and at
	// which.
	gap      float64
	measured bool
	sentGap  float64
	// sentAt is when the request in flight left. thLo and thHi bracket
	// the server's clock minus ours (seconds), learnt from Date: the
	// server's second D began before it answered and ends after it was
	// asked. Only when the bracket is narrow is a probe timed to a cheap
	// 429 (see cheap).
	sentAt     time.Time
	thLo, thHi float64
	clocked    bool
	// late is how much later than asked a request lately left when the
	// head waited for its gap (timer and scheduling delay, seconds);
	// waited says the head is waiting for the release time.
	late   float64
	waited bool
	// roundHi is hi when the current timed descent began (0: none under
	// way); without a refusal yet, it sets the descent's floor.
	roundHi float64
}

// singleStart is the first gap tried on a bucket of one (8/s): at R = 5
// its refusal costs no more than that of the 4/s after it would.
const singleStart = 0.125

// Settled gap of a bucket of one: hi × (1 + margin) + slack; a 429 at
// that gap doubles the margin and adds singleSlack to the slack, up to
// the caps.
const (
	singleMargin    = 0.003
	singleSlack     = 0.0005
	singleMarginCap = 0.1
	singleSlackCap  = 0.005
)

// singleProbeQuiet is how long a bracketed gap holds before the first
// probe below it; four times longer before each further one.
const singleProbeQuiet = 2 * time.Minute

func (s *single) start(now time.Time) {
	if s.on {
		return
	}
	*s = single{on: true, margin: singleMargin, slack: singleSlack, gap: singleStart, probeAt: now.Add(singleProbeQuiet)}
}

// release returns when the next request may go, given that it is now
// (zero: at once), and records the gap it goes at.
func (s *single) release(now time.Time) time.Time {
	if s.base.IsZero() {
		s.measured = false
		return time.Time{}
	}
	gap := s.gap
	if s.descending() {
		// Fast servers: one timed descent per second (see descend).
		gap = max(s.descend(s.base)-s.late, s.lo)
		s.gap = gap
	} else if s.probing() {
		// A probe leaves as much sooner as requests usually leave late
		// (hi and lo are gaps measured as requests left), or the
		// lateness would eat the step; it goes only where its 429 would
		// be cheap. Otherwise the request goes at the best gap accepted
		// so far, kept off its edge (held). Settled requests are sent
		// sooner only by up to the
		// slack: at R = 20 the lateness varies by a millisecond, enough
		// to draw 429s.
		// Never below a refused gap, except for the probe that checks
		// whether the limit was raised.
		floor := s.lo
		if s.probeDue {
			floor = 0
		}
		gap = max(gap-s.late, floor)
		if !s.cheap(s.base.Add(secs(gap))) {
			gap = s.held()
		}
	} else if s.settled() {
		// The settled gap's slack may go to the lateness: a request
		// still leaves no sooner than hi × (1 + margin) after the answer,
		// longer than a gap the server accepted.
		gap -= min(s.late, s.slack)
	}
	at := s.base.Add(secs(gap))
	if at.After(now) {
		s.waited = true
		return at
	}
	s.sentProbe = gap < s.hi
	if s.waited {
		// How much later than meant the head let the request go: the
		// timer's or the yield's overshoot.
		s.late = min(0.8*s.late+0.2*now.Sub(at).Seconds(), 0.3*gap)
		s.waited = false
	}
	s.measured, s.sentGap = true, now.Sub(s.base).Seconds()
	return time.Time{}
}

// held is the gap of a request that goes while a step below hi waits for
// a cheap moment (or a timed descent for its start): hi off its edge by the margin and slack, like the
// settled gap. hi itself may have been accepted only thanks to the time
// the request before it spent in the server; sent at hi again, a request
// can be refused, at a moment where the gate costs up to a second.
func (s *single) held() float64 { return s.hi*(1+s.margin) + s.slack }

// Timed descent: below singleDescendBelow (20 ms, paces over 50/s) the
// search under hi is paced against the server's second rather than held
// back for a window.
//
// A 429 closes the gate until the next whole second, and costs only the
// time left until then where the request was at least 1/R before it
// (cheap). So rather than step down a fixed 2 % a request wherever a
// window allows, the gap descends from hi towards a floor f on a schedule
// that reaches f right where the cheap window of the server's coming
// second ends: with t seconds left, each request steps (hi − f)/t below
// the last accepted gap (steps of a fraction st take about (hi − f)/st
// seconds from hi to f). The refusal comes when the gap passes 1/R,
// before the window ends, and its gate costs what was left of the
// schedule. The step it came at brackets R: 2.5 % or less settles it.
//
//   - Before any refusal f is a quarter of the gap the round began at
//     (a round that reaches it unrefused begins another), and the
//     descent starts at once: R may lie anywhere under hi, and fine
//     steps cost less than waiting at hi. At R = 200 in the bench the
//     doubling hands over at 16 ms, and each of the two refusals' gates
//     cost 9–41 ms (0.2–0.4 s with the windows this replaced).
//   - After one, f is lo: R lies between lo and hi, so requests go at
//     the held gap until steps of 1 % just fit, and the second refusal
//     comes near the window's end.
const (
	singleDescendBelow = 0.02
	singleDescendLeast = 0.01 // the finest step after a refusal
	singleDescendStep  = 0.02 // the step where the server's second is unknown
	singleDescendMax   = 0.5  // the largest step
	singleFirstFloor   = 4    // before a refusal, f = the round's first hi / 4
)

// descending reports whether the next request is a step of a timed
// descent: the best accepted gap is short, R not yet bracketed closely,
// and no probe for a raised limit is due.
func (s *single) descending() bool {
	return s.hi > 0 && s.hi < singleDescendBelow && !s.settled() && !s.probeDue
}

// descend returns the gap of the next request of a timed descent whose
// previous answer arrived at base (see singleDescendBelow).
func (s *single) descend(base time.Time) float64 {
	if s.roundHi == 0 || s.hi <= s.floor() {
		s.roundHi = s.hi
	}
	f := s.floor()
	left, ok := s.windowLeft(base)
	if !ok {
		// The server's clock is not ours and not known: every moment is
		// as cheap as any other.
		return max(s.hi*(1-singleDescendStep), f)
	}
	// Steps of a fraction st a request take about (hi − f)/st seconds
	// from hi to f.
	st := (s.hi - f) / left
	if st < singleDescendLeast && s.lo > 0 {
		// R lies between lo and hi, and there is time enough for steps
		// finer than needed: wait at the held gap for the moment they
		// just fit, so the refusal comes near the window's end. (Before
		// any refusal R may lie anywhere under hi: descending at once,
		// in fine steps, beats waiting at hi.)
		s.roundHi = 0
		return s.held()
	}
	return max(s.hi*(1-min(st, singleDescendMax)), f)
}

// floor is where the current descent aims: lo, or a quarter of the gap it
// began at while nothing was refused.
func (s *single) floor() float64 {
	if s.lo > 0 {
		return s.lo
	}
	return s.roundHi / singleFirstFloor
}

// windowLeft returns the seconds from t until the cheap window of the
// server's coming second ends (a request refused after that costs a whole
// second more), counting on to the next second's window when this one's
// has passed; ok is false when the server's clock is not known to be
// close to ours (see cheap).
func (s *single) windowLeft(t time.Time) (float64, bool) {
	left, ok := s.beforeSecond(t)
	if ok && left <= 0 {
		left++
	}
	return left, ok
}

// sent records that the request in flight left at now.
func (s *single) sent(now time.Time) { s.sentAt = now }

// clock narrows the server's clock offset from the Date (Unix second d)
// of an answer that arrived at now.
func (s *single) clock(d int64, ok bool, now time.Time) {
	if !ok || s.sentAt.IsZero() {
		return
	}
	lo := float64(d) - float64(now.UnixNano())/1e9
	hi := float64(d) + 1 - float64(s.sentAt.UnixNano())/1e9
	if !s.clocked || lo > s.thHi || hi < s.thLo {
		s.thLo, s.thHi, s.clocked = lo, hi, true
		return
	}
	s.thLo, s.thHi = max(s.thLo, lo), min(s.thHi, hi)
}

// probing reports whether the chosen gap is a step below every gap
// accepted so far, after a first refusal (the doubling before it is not
// held back: it finds R's order of magnitude within a few requests).
func (s *single) probing() bool { return s.lo > 0 && s.hi > 0 && s.gap < s.hi }

// cheap reports whether a request released at t that drew a 429 would
// close the gate only briefly: the server's bucket is full again at most
// 1/R after the refused request, and the gate ends at Reset, the next
// whole second; a request between 1/R and 1/R + W before a whole second
// is refused for at most W + 1/R. W is three gaps (at least 400 ms), so
// a few steps fit into each second; the window keeps clear of the
// second's end by the uncertainty of the server's clock. Until Date has
// told that clock to within 100 ms (it takes up to a second of answers),
// a server whose Dates agree with ours is taken to share our clock, as
// servers kept by NTP do to within milliseconds: a wrong guess only
// times a probe at random, as no guess would. A server known to differ
// by more: every time is as cheap as any other.
func (s *single) cheap(t time.Time) bool {
	left, ok := s.beforeSecond(t)
	return !ok || (left > 0 && left <= max(0.4, 3*s.gap))
}

// beforeSecond returns the seconds from t until 1/R (at most hi) plus the
// clock's error before the server's next whole second: the last moment a
// refused request's gate ends at that second. ok is false when the
// server's clock is not known to be close to ours (see cheap).
func (s *single) beforeSecond(t time.Time) (float64, bool) {
	off, err, ok := s.serverClock()
	if !ok {
		return 0, false
	}
	srv := float64(t.UnixNano())/1e9 + off
	return math.Ceil(srv) - srv - s.hi - err, true
}

// serverClock returns the server's clock minus ours and its error, in
// seconds, as cheap takes them; ok is false for a server known to differ
// from our clock by more than 50 ms but not to within it.
func (s *single) serverClock() (off, err float64, ok bool) {
	off, err = s.thLo+(s.thHi-s.thLo)/2, (s.thHi-s.thLo)/2
	switch {
	case s.clocked && err <= 0.05:
		return off, err, true
	case !s.clocked || (s.thLo <= 0 && s.thHi >= 0):
		return 0, clockGuess, true
	}
	return 0, 0, false
}

// clockGuess is the error allowed for a server taken to share our clock.
const clockGuess = 0.005

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// lost records a request that got no answer: whether the server counted
// it is unknown, so the next one is not measured.
func (s *single) lost() { s.base = time.Time{} }

// accepted records an accepted answer that arrived at now.
func (s *single) accepted(now time.Time) {
	if s.sentProbe {
		s.probeDue = false
	}
	if s.measured {
		g := s.sentGap
		if s.hi == 0 || g < s.hi {
			s.hi = g
		}
		if s.lo > 0 && g < 0.95*s.lo {
			// Accepted well below a gap that was refused: the server's
			// limit was raised. Double the pace again from here.
			s.lo = 0
		}
	}
	s.base = now
	s.choose(now)
}

// refused records a 429 that arrived at now; the gate is closed.
func (s *single) refused(now time.Time) {
	if s.sentProbe {
		s.probeDue = false
	}
	if s.measured {
		g := s.sentGap
		s.lo = max(s.lo, g)
		if s.hi > 0 && g >= s.hi {
			// Refused at a gap at least as long as one accepted before:
			// that acceptance was the previous request's time in the
			// server, not headroom. 1/R is above g.
			s.margin = min(2*s.margin, singleMarginCap)
			s.slack = min(s.slack+singleSlack, singleSlackCap)
			s.hi = g * 1.02
		}
	}
	s.base = time.Time{}
	s.roundHi = 0
	s.choose(now)
}

// settled reports whether lo and hi bracket the refill time closely.
func (s *single) settled() bool { return s.lo > 0 && s.hi > 0 && s.hi <= s.lo*1.025 }

// choose sets the gap of the next request.
func (s *single) choose(now time.Time) {
	switch {
	case s.hi == 0:
		// Nothing accepted at a measured gap yet: go slower than
		// anything refused.
		s.gap = max(singleStart, 2*s.lo)
	case s.lo == 0:
		s.gap = s.hi / 2
	case !s.settled():
		s.gap = s.hi * 0.98
	case s.probeDue || now.After(s.probeAt):
		// One probe 10 % below the bracket: accepted, the limit was
		// raised (see accepted); refused, one cheap 429.
		if !s.probeDue {
			s.probeDue = true
			s.probes++
			s.probeAt = now.Add(singleProbeQuiet << (2 * min(s.probes, 10)))
		}
		s.gap = min(s.hi, s.lo) * 0.9
	default:
		s.gap = max(s.hi, s.lo*1.02)*(1+s.margin) + s.slack
	}
}
