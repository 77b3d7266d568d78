package packet

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// canned is what the fuzzed server answers to every request.
type canned struct {
	mu          sync.Mutex
	status      int
	contentType string
	body        []byte
}

func (c *canned) set(status int, contentType string, body []byte) {
	c.mu.Lock()
	c.status, c.contentType, c.body = status, contentType, body
	c.mu.Unlock()
}

func (c *canned) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	c.mu.Lock()
	status, ct, body := c.status, c.contentType, c.body
	c.mu.Unlock()
	if ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	w.WriteHeader(status)
	w.Write(body)
}

// FuzzDecodeResponses serves arbitrary bodies, statuses and content types
// to every client call that decodes a response (listing, create, project,
// update, delete, catalogue): each returns a clear error or a result,
// never panics, and never shows the token. The checked-in corpus holds
// truncated JSON, HTML error pages, wrong content types, missing fields
// and wrong types.
func FuzzDecodeResponses(f *testing.F) {
	api := &canned{}
	srv := httptest.NewServer(api)
	f.Cleanup(srv.Close)
	c, err := New(Config{APIURL: srv.URL + "/metal/v1/", Token: testToken, Project: testProject, Fleet: "lab",
		RequestTimeout: 5 * time.Second, MaxRetries: -1, RetryBudget: time.Second})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })

	f.Add(200, "application/json", []byte(`{"devices":[{"id":"x","hostname":"h","state":"active","tags":["lkfleet:fleet=lab","lkfleet:slot=web/ams1/1"]}],"meta":{"total":1}}`))
	f.Add(200, "application/json", []byte(`{"devices":[{"id":"x","hostn`))
	f.Add(502, "text/html", []byte("<html><body><h1>502 Bad Gateway</h1></body></html>"))
	f.Add(200, "text/plain", []byte("OK"))
	f.Add(201, "application/json", []byte(`{}`))
	f.Add(422, "application/json", []byte(`{"errors":["hostname is invalid",null,42]}`))
	f.Add(200, "application/json", []byte(`{"devices":{"id":1},"meta":"x"}`))
	f.Add(200, "application/json", []byte(`{"devices":[null,{"tags":null,"provisioning_events":[{"type":"user_state","state":7}]}]}`))
	f.Add(401, "", []byte(""))

	f.Fuzz(func(t *testing.T, status int, contentType string, body []byte) {
		if status < 200 || status > 599 || status == http.StatusTooManyRequests {
			// 429 is retried by design, 1xx is not a final answer.
			t.Skip()
		}
		if strings.ContainsAny(contentType, "\r\n\x00") {
			t.Skip()
		}
		api.set(status, contentType, body)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		defer func() {
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("the calls took %s: a bad answer must fail fast", took)
			}
		}()
		check := func(op string, err error) {
			if err == nil {
				return
			}
			msg := err.Error()
			if msg == "" || strings.Contains(msg, testToken) {
				t.Fatalf("%s: unclear error %q", op, msg)
			}
			if status < 300 && !strings.Contains(msg, "device") && !strings.Contains(msg, "project") &&
				!strings.Contains(msg, "catalogue") && !strings.Contains(msg, "list") && !strings.Contains(msg, "plans") &&
				!strings.Contains(msg, "facilities") && !strings.Contains(msg, "metros") {
				t.Fatalf("%s: error does not name the operation: %q", op, msg)
			}
		}
		lives, err := c.List(ctx)
		check("list", err)
		if err == nil && status >= 300 {
			t.Fatalf("list succeeded on a %d answer: %+v", status, lives)
		}
		_, err = c.Create(ctx, testDevice())
		check("create", err)
		if err != nil && status >= 500 && !isAmbiguous(err) {
			t.Fatalf("create answered %d is not ambiguous: %v", status, err)
		}
		check("update", c.Update(ctx, "0f9c9c1a-0000-4000-8000-000000000001", planner.DeviceUpdate{Hostname: new("h")}))
		check("delete", c.Delete(ctx, "0f9c9c1a-0000-4000-8000-000000000001"))
		c.cat = catalogueCache{}
		_, err = c.Catalogue(ctx)
		check("catalogue", err)
	})
}

// endless is a body that never ends (until the reader gives up).
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	e.n += int64(len(p))
	return len(p), nil
}

// TestHugeResponseIsRefused serves a body eight times MaxResponseBody:
// the client stops reading past the limit with an error that says so, and
// what it allocates depends on the limit, not on the body (reading it all
// would allocate well over twice its size).
func TestHugeResponseIsRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"devices":[`))
		io.Copy(w, io.LimitReader(&endless{}, 8*MaxResponseBody))
	}))
	defer srv.Close()
	c := startFakeURL(t, srv.URL)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := c.List(t.Context())
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "larger than "+strconv.Itoa(MaxResponseBody>>20)+" MiB") {
		t.Fatalf("endless listing: %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 6*MaxResponseBody {
		t.Errorf("reading one oversized answer allocated %d MiB", grew>>20)
	}
	srv.CloseClientConnections()
}

// startFakeURL returns a client for a server at url that does not retry.
func startFakeURL(t *testing.T, url string) *Client {
	t.Helper()
	c, err := New(Config{APIURL: url + "/metal/v1/", Token: testToken, Project: testProject, Fleet: "lab",
		RequestTimeout: 20 * time.Second, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// FuzzDecodePage: the listings' decoder never panics on a page, and when
// both it and encoding/json read a page, they read the same devices.
func FuzzDecodePage(f *testing.F) {
	f.Add([]byte(`{"devices":[{"id":"x","hostname":"h","state":"active","tags":["lkfleet:fleet=lab"],"plan":{"slug":"p"},"facility":{"code":"ams1","metro":{"code":"am"}},"provisioning_events":[{"type":"user.1001","state":"succeeded","created_at":"2026-01-02T03:04:05Z"}]}],"meta":{"total":1,"last_page":1}}`))
	f.Add([]byte(`{"devices":[{"id":"x","provisioning_events":[{"created_at":1767323045}],"termination_time":"2026-01-02T03:04:05Z"}]}`))
	f.Add([]byte(`{"devices":[{"id":"x","tags":null,"plan":null}],"meta":{"current_page":2}}`))
	f.Add([]byte(`{"devices":[{"id":"x","hostn`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast listPage[listedDevice]
		ferr := decodePage(data, &fast)
		var std listPage[listedDevice]
		if json.Unmarshal(data, &std) != nil || ferr != nil {
			return
		}
		if len(fast.Devices) != len(std.Devices) || fast.Meta != std.Meta {
			t.Fatalf("go-json read %d devices and %+v, encoding/json %d and %+v", len(fast.Devices), fast.Meta, len(std.Devices), std.Meta)
		}
		for i := range fast.Devices {
			if a, b := fast.Devices[i].live(), std.Devices[i].live(); !reflect.DeepEqual(a, b) {
				t.Fatalf("device %d: go-json %+v, encoding/json %+v", i, a, b)
			}
		}
	})
}
