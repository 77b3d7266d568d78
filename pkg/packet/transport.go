package packet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Backoff between retries of failed (not throttled) requests: exponential
// from backoffBase, capped at backoffMax, with equal jitter so that callers
// failing together do not come back together.
const (
	backoffBase = 200 * time.Millisecond
	backoffMax  = 10 * time.Second
	// maxThrottled bounds resends after 429s; RetryBudget bounds their time.
	maxThrottled = 100
	// debugBodyMax bounds how much of a body a debug dump shows.
	debugBodyMax = 4 << 10
	// MaxResponseBody bounds the response body read into memory. A page of
	// PerPage devices is a few MiB; anything past this is not an answer
	// the client could use (a proxy's error stream, a wrong endpoint), and
	// reading it whole would let a server exhaust our memory.
	MaxResponseBody = 32 << 20
)

// retryClass says which failures a request may be re-sent after.
type retryClass int

const (
	// classAuto derives the class from the method: GET, HEAD, PUT, DELETE
	// and OPTIONS are idempotent, everything else is sent once.
	classAuto retryClass = iota
	// classIdempotent requests are re-sent after 429, 5xx, transport
	// errors and unreadable responses: repeating them changes nothing.
	classIdempotent
	// classOnce requests (creates, device actions) are re-sent only when
	// the server certainly did not act: after a 429, or when the
	// connection could not even be opened.
	classOnce
)

type retryClassKey struct{}

// withRetryClass marks every request made under ctx with class.
func withRetryClass(ctx context.Context, c retryClass) context.Context {
	return context.WithValue(ctx, retryClassKey{}, c)
}

func classOf(req *http.Request) retryClass {
	if c, ok := req.Context().Value(retryClassKey{}).(retryClass); ok && c != classAuto {
		return c
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return classIdempotent
	}
	return classOnce
}

// Stats counts what the transport did. Requests counts every attempt that
// went on the wire (retries included), Throttled the 429 answers among them,
// Retries the attempts that repeated an earlier one.
type Stats struct {
	Requests  int
	Throttled int
	Retries   int
}

// transport is the http.RoundTripper under packngo: the shared pacer, the
// retry policy, per-attempt timeouts, statistics and redacted debug dumps.
type transport struct {
	base       http.RoundTripper
	pacer      *pacer
	timeout    time.Duration
	maxRetries int
	budget     time.Duration
	tok        *secret
	// backoffBase is the first retry's pause (backoffBase; tests shorten it).
	backoffBase time.Duration

	debugMu sync.Mutex
	debug   io.Writer

	requests, throttled, retries atomic.Int64

	sizes bodySizes // how large each route's answers were (body.go)
}

func (t *transport) stats() Stats {
	return Stats{
		Requests:  int(t.requests.Load()),
		Throttled: int(t.throttled.Load()),
		Retries:   int(t.retries.Load()),
	}
}

// RoundTrip sends req, pacing and retrying as its retry class allows. The
// response body is read completely before RoundTrip returns, so the
// per-attempt timeout covers the whole exchange and a truncated body counts
// as a failed attempt rather than surfacing later in a JSON decoder.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	getBody, err := rewindable(req)
	if err != nil {
		return nil, err
	}
	class := classOf(req)
	start := time.Now()
	failures, throttles := 0, 0
	for {
		resp, err := t.attempt(ctx, req, getBody)
		if _, ok := errors.AsType[*waitError](err); ok {
			return nil, err
		}
		if ctx.Err() != nil {
			// Cancelled by the caller (Ctrl-C) or past its deadline:
			// give up at once, whatever this attempt produced.
			return nil, ctx.Err()
		}
		var delay time.Duration
		switch {
		case err != nil:
			if class != classIdempotent && !neverSent(err) {
				return nil, err
			}
			failures++
			delay = backoff(t.backoffBase, failures)
		case resp.StatusCode == http.StatusTooManyRequests:
			// The server refused before acting: resending is safe for every
			// class. The pacer's gate already holds every caller back until
			// Retry-After, so no extra backoff here.
			throttles++
			if throttles > maxThrottled {
				return resp, nil
			}
		case resp.StatusCode >= 500 && class == classIdempotent:
			failures++
			delay = backoff(t.backoffBase, failures)
		default:
			return resp, nil
		}
		if failures > t.maxRetries || time.Since(start)+delay > t.budget {
			return resp, err
		}
		if err := sleep(ctx, delay); err != nil {
			return nil, err
		}
		t.retries.Add(1)
	}
}

// attempt sends one copy of req under the per-attempt timeout and returns
// the response with its body fully read.
func (t *transport) attempt(ctx context.Context, req *http.Request, getBody func() (io.ReadCloser, error)) (*http.Response, error) {
	sent, err := t.pacer.wait(ctx)
	if err != nil {
		return nil, &waitError{err}
	}
	actx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	r := req.Clone(actx)
	// packngo asks for a new connection per request; keep-alive saves a
	// handshake per call and the pacer, not the socket count, limits us.
	r.Close = false
	if getBody != nil {
		body, err := getBody()
		if err != nil {
			t.pacer.done(sent, nil, 0)
			return nil, err
		}
		r.Body = body
	}
	t.dumpRequest(r)
	t.requests.Add(1)
	began := time.Now()
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		t.pacer.done(sent, nil, 0)
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("no response within %s: %w", t.timeout, err)
		}
		t.dumpError(r, err)
		return nil, err
	}
	body, rc, rerr := t.sizes.read(r, resp) // body.go
	resp.Body.Close()
	if rerr == nil && len(body) > MaxResponseBody {
		body = nil
		rerr = fmt.Errorf("body larger than %d MiB", MaxResponseBody>>20)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		t.throttled.Add(1)
	}
	t.pacer.done(sent, resp.Header, resp.StatusCode)
	if rerr != nil {
		err := fmt.Errorf("read %d response: %w", resp.StatusCode, rerr)
		t.dumpError(r, err)
		return nil, err
	}
	resp.Body = rc
	resp.ContentLength = int64(len(body))
	t.dumpResponse(resp, body, time.Since(began))
	return resp, nil
}

// waitError is a wait for the limiter or the gate that ended early: the
// request was never sent and must not be tried again.
type waitError struct{ err error }

func (e *waitError) Error() string { return "waiting for the rate limiter: " + e.err.Error() }
func (e *waitError) Unwrap() error { return e.err }

// rewindable returns a function that yields a fresh copy of req's body for
// each attempt, buffering the body if the request cannot rewind it itself.
func rewindable(req *http.Request) (func() (io.ReadCloser, error), error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	if req.GetBody != nil {
		req.Body.Close()
		return req.GetBody, nil
	}
	data, err := io.ReadAll(req.Body)
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }, nil
}

// neverSent reports whether err proves the request never reached the
// server: the connection could not be opened.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// backoff is the pause before the n-th retry (n ≥ 1): half fixed, half
// random, doubling up to backoffMax.
func backoff(base time.Duration, n int) time.Duration {
	d := base << min(n-1, 10)
	d = min(d, backoffMax)
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// dumpRequest writes req to the debug writer with the token redacted.
func (t *transport) dumpRequest(r *http.Request) {
	if t.debug == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "> %s %s\n", r.Method, r.URL)
	writeHeaders(&b, "> ", r.Header)
	if r.GetBody != nil {
		if body, err := r.GetBody(); err == nil {
			data, _ := io.ReadAll(io.LimitReader(body, debugBodyMax+1))
			body.Close()
			writeBody(&b, "> ", data)
		}
	}
	t.writeDebug(b.String())
}

func (t *transport) dumpResponse(resp *http.Response, body []byte, took time.Duration) {
	if t.debug == nil {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "< %s %s: %s (%s)\n", resp.Request.Method, resp.Request.URL, resp.Status, took.Round(time.Millisecond))
	writeHeaders(&b, "< ", resp.Header)
	writeBody(&b, "< ", body)
	t.writeDebug(b.String())
}

func (t *transport) dumpError(r *http.Request, err error) {
	if t.debug == nil {
		return
	}
	t.writeDebug(fmt.Sprintf("< %s %s: %v\n", r.Method, r.URL, err))
}

func (t *transport) writeDebug(s string) {
	s = t.tok.redact(s)
	t.debugMu.Lock()
	defer t.debugMu.Unlock()
	io.WriteString(t.debug, s)
}

// sensitiveHeaders are never dumped with their values.
var sensitiveHeaders = []string{"X-Auth-Token", "X-Consumer-Token", "Authorization", "Cookie", "Set-Cookie"}

func writeHeaders(b *strings.Builder, prefix string, h http.Header) {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range h[k] {
			if slices.ContainsFunc(sensitiveHeaders, func(s string) bool { return strings.EqualFold(s, k) }) {
				v = redacted
			}
			fmt.Fprintf(b, "%s%s: %s\n", prefix, k, v)
		}
	}
}

func writeBody(b *strings.Builder, prefix string, data []byte) {
	if len(data) == 0 {
		return
	}
	more := ""
	if len(data) > debugBodyMax {
		data, more = data[:debugBodyMax], fmt.Sprintf(" … (%d bytes shown)", debugBodyMax)
	}
	fmt.Fprintf(b, "%s%s%s\n", prefix, bytes.TrimRight(data, "\n"), more)
}
