package packet

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testToken   = "s3cr3t-token-value"
	testProject = "11111111-2222-4333-8444-555555555555"
)

// fakeAPI is a small in-memory Packet API: enough routes for the client's
// calls, request recording, and hooks to inject failures.
type fakeAPI struct {
	mu       sync.Mutex
	devices  []map[string]any
	requests []string // "METHOD /path?query"
	bodies   []string
	// hook, if set, may answer a request itself (return true).
	hook func(w http.ResponseWriter, r *http.Request, n int) bool
	// omitMeta leaves meta out of listings.
	omitMeta bool
}

func (f *fakeAPI) count(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body := make([]byte, 0)
	if r.Body != nil {
		var sb strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			sb.Write(buf[:n])
			if err != nil {
				break
			}
		}
		body = []byte(sb.String())
	}
	f.mu.Lock()
	f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
	f.bodies = append(f.bodies, string(body))
	n := len(f.requests)
	hook := f.hook
	f.mu.Unlock()
	if hook != nil && hook(w, r, n) {
		return
	}
	if r.Header.Get("X-Auth-Token") != testToken {
		writeJSON(w, 401, map[string]any{"errors": []string{"Invalid authentication token"}})
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/metal/v1/")
	switch {
	case r.Method == "GET" && p == "projects/"+testProject:
		writeJSON(w, 200, map[string]any{"id": testProject, "name": "lab"})
	case strings.HasPrefix(p, "projects/") && !strings.HasPrefix(p, "projects/"+testProject):
		writeJSON(w, 404, map[string]any{"errors": []string{"Not found"}})
	case r.Method == "GET" && p == "projects/"+testProject+"/devices":
		f.list(w, r.URL.Query())
	case r.Method == "POST" && p == "projects/"+testProject+"/devices":
		var in map[string]any
		json.Unmarshal(body, &in)
		d := map[string]any{"id": fmt.Sprintf("00000000-0000-4000-8000-%012d", n), "hostname": in["hostname"],
			"state": "queued", "tags": in["tags"], "plan": map[string]any{"slug": in["plan"]}}
		f.mu.Lock()
		f.devices = append(f.devices, d)
		f.mu.Unlock()
		writeJSON(w, 201, d)
	case r.Method == "DELETE" && strings.HasPrefix(p, "devices/"):
		writeJSON(w, 404, map[string]any{"errors": []string{"Not found"}})
	case r.Method == "PUT" && strings.HasPrefix(p, "devices/"):
		writeJSON(w, 200, map[string]any{"id": strings.TrimPrefix(p, "devices/")})
	case r.Method == "POST" && strings.HasSuffix(p, "/actions"):
		w.WriteHeader(202)
	default:
		writeJSON(w, 404, map[string]any{"errors": []string{"no route " + p}})
	}
}

func (f *fakeAPI) list(w http.ResponseWriter, q url.Values) {
	f.mu.Lock()
	var match []map[string]any
	tag := q.Get("tag")
	for _, d := range f.devices {
		if tag == "" || hasTag(d, tag) {
			match = append(match, d)
		}
	}
	f.mu.Unlock()
	page, _ := strconv.Atoi(q.Get("page"))
	per, _ := strconv.Atoi(q.Get("per_page"))
	page, per = max(page, 1), max(per, 1)
	last := max(1, (len(match)+per-1)/per)
	lo, hi := min((page-1)*per, len(match)), min(page*per, len(match))
	out := map[string]any{"devices": match[lo:hi]}
	if !f.omitMeta {
		out["meta"] = map[string]any{"current_page": page, "last_page": last, "total": len(match),
			"next": map[string]any{"href": "/metal/v1/projects/x/devices?page=" + strconv.Itoa(page+1)}}
	}
	writeJSON(w, 200, out)
}

func hasTag(d map[string]any, tag string) bool {
	switch ts := d["tags"].(type) {
	case []string:
		for _, t := range ts {
			if t == tag {
				return true
			}
		}
	case []any:
		for _, t := range ts {
			if t == tag {
				return true
			}
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// seed adds n devices tagged for fleet (foreign when fleet is "").
func (f *fakeAPI) seed(n int, fleet string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range n {
		tags := []string{"other"}
		if fleet != "" {
			tags = []string{"lkfleet:fleet=" + fleet, fmt.Sprintf("lkfleet:slot=g/ams1/%d", i+1)}
		}
		f.devices = append(f.devices, map[string]any{
			"id": fmt.Sprintf("%08d-0000-4000-8000-%012d", len(f.devices), i), "hostname": fmt.Sprintf("h%d", i),
			"state": "active", "tags": tags,
		})
	}
}

// startFake serves f on 127.0.0.1 and returns a client for it.
func startFake(t *testing.T, f http.Handler, mod func(*Config)) *Client {
	t.Helper()
	srv := httptest.NewServer(f)
	cfg := Config{APIURL: srv.URL + "/metal/v1/", Token: testToken, Project: testProject, Fleet: "lab",
		RequestTimeout: 5 * time.Second, RetryBudget: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.tr.backoffBase = 2 * time.Millisecond
	t.Cleanup(func() {
		c.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	return c
}

// bucket is a token bucket rate limiter in front of a handler, answering
// like the service: X-RateLimit-* on every response, 429 + Retry-After
// when empty. resetFull makes Reset the time the bucket is full again;
// otherwise it is the next second.
type bucket struct {
	next      http.Handler
	rate      float64
	burst     float64
	resetFull bool

	mu        sync.Mutex
	tokens    float64
	last      time.Time
	accepted  int
	throttled int
	sent      []time.Time // when each accepted request arrived
}

func newBucket(next http.Handler, rate, burst float64, resetFull bool) *bucket {
	return &bucket{next: next, rate: rate, burst: burst, tokens: burst, resetFull: resetFull, last: time.Now()}
}

func (b *bucket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	ok := b.tokens >= 1
	if ok {
		b.tokens--
		b.accepted++
		b.sent = append(b.sent, now)
	} else {
		b.throttled++
	}
	h := w.Header()
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	h.Set("X-RateLimit-Limit", strconv.Itoa(int(b.burst)))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(int(b.tokens)))
	reset := now.Add(time.Second)
	if b.resetFull {
		reset = now.Add(time.Duration((b.burst - b.tokens) / b.rate * float64(time.Second)))
	}
	h.Set("X-RateLimit-Reset", strconv.FormatInt(int64(math.Ceil(float64(reset.UnixNano())/1e9)), 10))
	wait := (1 - b.tokens) / b.rate
	b.mu.Unlock()
	if !ok {
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(wait))))
		writeJSON(w, 429, map[string]any{"errors": []string{"Rate limit exceeded"}})
		return
	}
	b.next.ServeHTTP(w, r)
}

// memTransport serves requests in memory (for testing/synctest bubbles,
// where sockets cannot be used), with a fixed latency.
type memTransport struct {
	h       http.Handler
	latency time.Duration
}

func (m memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if m.latency > 0 {
		t := time.NewTimer(m.latency)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		}
	}
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// memClient returns a client served in memory by h.
func memClient(t *testing.T, h http.Handler, latency time.Duration, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{APIURL: "http://api.test/metal/v1/", Token: testToken, Project: testProject, Fleet: "lab", timerOnly: true,
		HTTPClient: &http.Client{Transport: memTransport{h: h, latency: latency}}}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
