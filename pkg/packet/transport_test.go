package packet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

func testDevice() spec.Device {
	d := spec.Device{Slot: "web/ams1/2", Fleet: "lab", Group: "web", Zone: "ams1", Index: 2,
		Hostname: "web-ams1-2", Machine: "c3.small.x86", Billing: "hourly", AlwaysPXE: true,
		Script: "#!ipxe\nboot", Rev: "0123456789ab"}
	return d
}

func fail(status int, msg string) func(http.ResponseWriter, *http.Request, int) bool {
	return func(w http.ResponseWriter, r *http.Request, n int) bool {
		writeJSON(w, status, map[string]any{"errors": []string{msg}})
		return true
	}
}

// dropConn closes the connection without an answer.
func dropConn(w http.ResponseWriter, r *http.Request, n int) bool {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		conn.Close()
	}
	return true
}

func TestIdempotentRetriesAreBounded(t *testing.T) {
	f := &fakeAPI{hook: fail(503, "try later")}
	c := startFake(t, f, func(cfg *Config) { cfg.MaxRetries = 3 })
	_, err := c.List(context.Background())
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 503 {
		t.Fatalf("err = %v, want a 503 APIError", err)
	}
	if got := f.count("GET "); got != 4 {
		t.Errorf("GET sent %d times, want 1 + 3 retries", got)
	}
	if st := c.Stats(); st.Requests != 4 || st.Retries != 3 || st.Throttled != 0 {
		t.Errorf("stats %+v", st)
	}
	if ae.Ambiguous() {
		t.Error("a failed listing is not ambiguous")
	}
}

func TestRetryBudgetBoundsTime(t *testing.T) {
	f := &fakeAPI{hook: fail(500, "boom")}
	c := startFake(t, f, func(cfg *Config) { cfg.MaxRetries = 100; cfg.RetryBudget = 300 * time.Millisecond })
	start := time.Now()
	if err := c.Delete(context.Background(), "00000000-0000-4000-8000-000000000001"); err == nil {
		t.Fatal("want an error")
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("retries took %v, budget 300ms", took)
	}
	if n := f.count("DELETE "); n < 2 || n > 20 {
		t.Errorf("DELETE sent %d times, want a few retries within the budget", n)
	}
}

func TestTransientFailuresRecover(t *testing.T) {
	var n atomic.Int32
	f := &fakeAPI{}
	f.hook = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		switch n.Add(1) {
		case 1:
			return dropConn(w, r, 0)
		case 2:
			writeJSON(w, 502, map[string]any{"error": "bad gateway"})
			return true
		}
		return false
	}
	f.seed(3, "lab")
	c := startFake(t, f, nil)
	devs, err := c.List(context.Background())
	if err != nil || len(devs) != 3 {
		t.Fatalf("List = %d devices, %v; want 3 after two retries", len(devs), err)
	}
	if st := c.Stats(); st.Requests != 3 || st.Retries != 2 {
		t.Errorf("stats %+v, want 3 requests, 2 retries", st)
	}
}

func TestCreateIsNeverRetried(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hook      func(http.ResponseWriter, *http.Request, int) bool
		ambiguous bool
		want      string
	}{
		{"5xx", fail(500, "internal error"), true,
			`create device "web-ams1-2" (slot web/ams1/2): 500 internal error (the device may have been created)`},
		{"dropped connection", dropConn, true, `create device "web-ams1-2" (slot web/ams1/2): `},
		{"unreadable answer", func(w http.ResponseWriter, r *http.Request, _ int) bool {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(201)
			w.Write([]byte(`{"id": "trunc`))
			return true
		}, true, `create device "web-ams1-2" (slot web/ams1/2): `},
		{"422", fail(422, "The facility ams1 has no capacity"), false,
			`create device "web-ams1-2" (slot web/ams1/2): 422 The facility ams1 has no capacity`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAPI{}
			f.hook = func(w http.ResponseWriter, r *http.Request, n int) bool {
				if r.Method == "POST" {
					return tc.hook(w, r, n)
				}
				return false
			}
			c := startFake(t, f, nil)
			_, err := c.Create(context.Background(), testDevice())
			if err == nil {
				t.Fatal("want an error")
			}
			if got := f.count("POST "); got != 1 {
				t.Errorf("create sent %d times, want exactly 1", got)
			}
			if isAmbiguous(err) != tc.ambiguous {
				t.Errorf("Ambiguous() = %v, want %v (%v)", !tc.ambiguous, tc.ambiguous, err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error\n%s\nwant prefix\n%s", err, tc.want)
			}
		})
	}
}

func TestCreateResentAfter429(t *testing.T) {
	var n atomic.Int32
	f := &fakeAPI{}
	f.hook = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			writeJSON(w, 429, map[string]any{"errors": []string{"slow down"}})
			return true
		}
		return false
	}
	c := startFake(t, f, nil)
	live, err := c.Create(context.Background(), testDevice())
	if err != nil {
		t.Fatal(err)
	}
	if live.Slot() != "web/ams1/2" || live.Fleet() != "lab" || live.Rev() != "0123456789ab" {
		t.Errorf("live = %+v", live)
	}
	if got := f.count("POST "); got != 2 {
		t.Errorf("create sent %d times, want 2 (refused by 429, then accepted)", got)
	}
	if st := c.Stats(); st.Throttled != 1 || st.Retries != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestCreateRequestBody(t *testing.T) {
	for _, tc := range []struct{ zone, want, notWant string }{
		{"ams1", `"facility":["ams1"]`, `"metro"`},
		{"am", `"metro":"am"`, `"facility"`},
	} {
		f := &fakeAPI{}
		c := startFake(t, f, nil)
		d := testDevice()
		d.Zone = tc.zone
		d.Rev = ""
		d.UserTags = nil
		if _, err := c.Create(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		body := f.bodies[0]
		for _, want := range []string{tc.want, `"operating_system":"custom_ipxe"`, `"userdata":"#!ipxe\nboot"`,
			`"always_pxe":true`, `"billing_cycle":"hourly"`, `"plan":"c3.small.x86"`,
			`"tags":["lkfleet:fleet=lab","lkfleet:slot=web/ams1/2"]`, `"project_id":"` + testProject} {
			if !strings.Contains(body, want) {
				t.Errorf("zone %s: body lacks %s:\n%s", tc.zone, want, body)
			}
		}
		if strings.Contains(body, tc.notWant) {
			t.Errorf("zone %s: body has %s:\n%s", tc.zone, tc.notWant, body)
		}
	}
}

func TestActionsAreNotRetriedAfter5xx(t *testing.T) {
	f := &fakeAPI{}
	f.hook = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method == "POST" {
			return fail(503, "busy")(w, r, 0)
		}
		return false
	}
	c := startFake(t, f, nil)
	err := c.Reboot(context.Background(), "00000000-0000-4000-8000-000000000001")
	if err == nil || !isAmbiguous(err) {
		t.Fatalf("err = %v, want an ambiguous error", err)
	}
	if got := f.count("POST "); got != 1 {
		t.Errorf("reboot sent %d times, want 1", got)
	}
	if !strings.Contains(f.bodies[0], `"type":"reboot"`) {
		t.Errorf("body %s", f.bodies[0])
	}
}

func TestCancellationAbortsInFlight(t *testing.T) {
	release := make(chan struct{})
	f := &fakeAPI{hook: func(w http.ResponseWriter, r *http.Request, _ int) bool {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return dropConn(w, r, 0)
	}}
	defer close(release)
	c := startFake(t, f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.List(ctx)
	if took := time.Since(start); took > time.Second {
		t.Errorf("cancelled call returned after %v, want < 1s", took)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if f.count("GET ") != 1 {
		t.Errorf("a cancelled call was retried")
	}
}

func TestPerRequestTimeout(t *testing.T) {
	var n atomic.Int32
	release := make(chan struct{})
	f := &fakeAPI{hook: func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if n.Add(1) == 1 {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return dropConn(w, r, 0)
		}
		return false
	}}
	defer close(release)
	c := startFake(t, f, func(cfg *Config) { cfg.RequestTimeout = 100 * time.Millisecond })
	if _, err := c.List(context.Background()); err != nil {
		t.Fatalf("List after one timed-out attempt: %v", err)
	}
	if st := c.Stats(); st.Requests != 2 || st.Retries != 1 {
		t.Errorf("stats %+v, want the timed-out GET retried once", st)
	}
}

func TestTokenNeverShown(t *testing.T) {
	var debug bytes.Buffer
	f := &fakeAPI{hook: fail(500, "token "+testToken+" is bad")}
	c := startFake(t, f, func(cfg *Config) { cfg.Debug = &debug; cfg.MaxRetries = -1 })
	_, err := c.Create(context.Background(), testDevice())
	if err == nil {
		t.Fatal("want an error")
	}
	_, lerr := c.List(context.Background())
	for name, s := range map[string]string{
		"create error": err.Error(), "list error": lerr.Error(), "debug dump": debug.String(),
		"client %v": fmt.Sprintf("%v", c), "client %#v": fmt.Sprintf("%#v", c),
		"error %#v": fmt.Sprintf("%#v", err),
	} {
		if strings.Contains(s, testToken) {
			t.Errorf("%s shows the token:\n%s", name, s)
		}
	}
	if !strings.Contains(debug.String(), "X-Auth-Token: [REDACTED]") || !strings.Contains(debug.String(), "POST ") {
		t.Errorf("debug dump lacks the redacted request:\n%s", debug.String())
	}
	if !strings.Contains(err.Error(), "token [REDACTED] is bad") {
		t.Errorf("error %q: want the message with the token redacted", err)
	}
}

func TestNewChecksConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Project: testProject}, "no API token"},
		{Config{Token: testToken}, "no project"},
		{Config{Token: testToken, Project: testProject, APIURL: "ftp://x/"}, "want http(s)"},
		{Config{Token: testToken, Project: testProject, Rate: -1}, "rate -1"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.cfg.APIURL, err, tc.want)
		}
	}
}

func TestEnv(t *testing.T) {
	env := map[string]string{"PACKET_API_KEY": "k2", "METAL_AUTH_TOKEN": "k3"}
	get := func(k string) string { return env[k] }
	if got := TokenFromEnv(get); got != "k2" {
		t.Errorf("TokenFromEnv = %q, want PACKET_API_KEY's", got)
	}
	env["PACKET_AUTH_TOKEN"] = "k1"
	if got := TokenFromEnv(get); got != "k1" {
		t.Errorf("TokenFromEnv = %q, want PACKET_AUTH_TOKEN's", got)
	}
	if got := APIURLFromEnv(get); got != DefaultAPIURL {
		t.Errorf("APIURLFromEnv = %q", got)
	}
	env["PACKET_API_URL"] = "http://127.0.0.1:1/metal/v1/"
	if got := APIURLFromEnv(get); got != env["PACKET_API_URL"] {
		t.Errorf("APIURLFromEnv = %q", got)
	}
}

func TestErrorWording(t *testing.T) {
	f := &fakeAPI{hook: func(w http.ResponseWriter, r *http.Request, n int) bool {
		if r.Method == "POST" {
			return dropConn(w, r, n)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		w.Write([]byte(`{"devices": [`))
		return true
	}}
	c := startFake(t, f, func(cfg *Config) { cfg.MaxRetries = -1 })
	_, err := c.Create(context.Background(), testDevice())
	if want := `create device "web-ams1-2" (slot web/ams1/2): no answer: EOF (the device may have been created)`; err == nil || err.Error() != want {
		t.Errorf("dropped create:\n%v\nwant\n%s", err, want)
	}
	_, err = c.List(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "list devices: unreadable answer: ") {
		t.Errorf("truncated listing: %v", err)
	}
}
