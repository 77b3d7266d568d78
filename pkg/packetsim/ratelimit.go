package packetsim

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// unlimitedHeader is what X-RateLimit-Limit and -Remaining say when the
// simulator has no limit, so header-driven clients never pause.
const unlimitedHeader = 1000000

// limiter is a token bucket per token: rate tokens per second, burst deep.
type limiter struct {
	rate    float64
	burst   float64
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// refill returns key's bucket brought up to now; the caller holds l.mu.
func (l *limiter) refill(key string, now time.Time) *bucket {
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(l.burst, b.tokens+el*l.rate)
		b.last = now
	}
	return b
}

// take spends one token of key and sets the X-RateLimit headers:
// Limit is the bucket size, Remaining the whole tokens left, Reset the
// Unix second at which the bucket is full again. When refused it returns
// the Retry-After seconds (at least 1).
func (l *limiter) take(h http.Header, key string, now time.Time) (bool, int) {
	if l.rate <= 0 {
		l.headers(h, key, now)
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.refill(key, now)
	ok := b.tokens >= 1
	if ok {
		b.tokens--
	}
	l.set(h, b, now)
	if ok {
		return true, 0
	}
	wait := (1 - b.tokens) / l.rate
	return false, max(1, int(math.Ceil(wait)))
}

// headers sets the X-RateLimit headers without spending a token.
func (l *limiter) headers(h http.Header, key string, now time.Time) {
	if l.rate <= 0 {
		h.Set("X-RateLimit-Limit", strconv.Itoa(unlimitedHeader))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(unlimitedHeader))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Unix()+1, 10))
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if key == "" {
		h.Set("X-RateLimit-Limit", strconv.Itoa(int(l.burst)))
		h.Set("X-RateLimit-Remaining", strconv.Itoa(int(l.burst)))
		h.Set("X-RateLimit-Reset", strconv.FormatInt(now.Unix(), 10))
		return
	}
	l.set(h, l.refill(key, now), now)
}

func (l *limiter) set(h http.Header, b *bucket, now time.Time) {
	full := now.Add(time.Duration((l.burst - b.tokens) / l.rate * float64(time.Second)))
	reset := full.Unix()
	if full.Nanosecond() > 0 {
		reset++
	}
	h.Set("X-RateLimit-Limit", strconv.Itoa(int(l.burst)))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(int(math.Max(0, math.Floor(b.tokens)))))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(reset, 10))
}
