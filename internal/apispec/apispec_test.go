package apispec

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// recorder captures what the transport reports instead of failing.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestValidatingTransport(t *testing.T) {
	doc := Load(t)
	const dev = "/metal/v1/devices/0b3c4d5e-0000-4000-8000-000000000001"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == dev && r.URL.Query().Get("bad") != "":
			w.Write([]byte(`{"id":"0b3c4d5e-0000-4000-8000-000000000001","state":"exploded","tags":"x"}`))
		case r.URL.Path == dev:
			w.Write([]byte(`{"id":"0b3c4d5e-0000-4000-8000-000000000001","state":"active","tags":["x"]}`))
		default:
			w.WriteHeader(http.StatusTooManyRequests) // not in the description: not checked
		}
	}))
	defer srv.Close()

	for _, tc := range []struct {
		name, method, path, body, token string
		want                            string // "" = valid
	}{
		{"valid", "GET", dev, "", "t", ""},
		{"bad response", "GET", dev + "?bad=1", "", "t", "response does not match"},
		{"no token", "GET", dev, "", "", "missing X-Auth-Token"},
		{"null tags", "POST", "/metal/v1/projects/0b3c4d5e-0000-4000-8000-000000000002/devices",
			`{"plan":"c3.small.x86","metro":"am","operating_system":"custom_ipxe","tags":null}`, "t", "request does not match"},
		{"unknown route", "GET", "/metal/v1/nothing/here", "", "t", "no such operation"},
		{"undocumented status", "GET", "/metal/v1/plans", "", "t", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			c := &http.Client{Transport: NewValidatingTransport(rec, doc, nil)}
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			if tc.token != "" {
				req.Header.Set("X-Auth-Token", tc.token)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := strings.Join(rec.errs, "\n")
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
				t.Fatalf("reported %q, want %q", got, tc.want)
			}
		})
	}
}
