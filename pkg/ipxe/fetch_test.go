package ipxe_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/ipxe"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// artifacts is a fake artifact server: files maps a path to its content,
// status maps a path to a forced status. It counts requests per
// "METHOD path".
type artifacts struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string]string
	status   map[string]int
	noHead   bool
	requests map[string]int
}

func newArtifacts(t *testing.T, files map[string]string) *artifacts {
	a := &artifacts{files: files, status: map[string]int{}, requests: map[string]int{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.requests[r.Method+" "+r.URL.Path]++
		body, ok := a.files[r.URL.Path]
		st := a.status[r.URL.Path]
		noHead := a.noHead
		a.mu.Unlock()
		switch {
		case noHead && r.Method == http.MethodHead:
			w.WriteHeader(http.StatusMethodNotAllowed)
		case st != 0:
			w.WriteHeader(st)
		case !ok:
			http.NotFound(w, r)
		default:
			_, _ = w.Write([]byte(body))
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *artifacts) count(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requests[key]
}

// deadURL returns a loopback URL on which nothing listens.
func deadURL(t *testing.T) string {
	s := httptest.NewServer(http.NotFoundHandler())
	u := s.URL
	s.Close()
	return u
}

func img(key, base string) spec.Image { return spec.Image{Key: key, Name: key, BaseURL: base} }

func TestFetchCmdlinesOncePerImageAndGivenWins(t *testing.T) {
	a := newArtifacts(t, map[string]string{
		"/i/sshd-cmdline":  "console=ttyS1 page_poison=1\n",
		"/i/redis-cmdline": "  console=tty0  ",
	})
	given := img("given", a.URL+"/i")
	given.Cmdline = "console=ttyAMA0"
	devs := []spec.Device{
		device(1, "baremetal_0", img("sshd", a.URL+"/i")),
		device(2, "baremetal_0", img("sshd", a.URL+"/i")),
		device(3, "baremetal_0", img("redis", a.URL+"/i")),
		device(4, "baremetal_0", given),
	}
	got, err := ipxe.FetchCmdlines(context.Background(), a.Client(), devs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"sshd": "console=ttyS1 page_poison=1", "redis": "console=tty0", "given": "console=ttyAMA0"}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("cmdline[%s] = %q, want %q", k, got[k], v)
		}
	}
	if n := a.count("GET /i/sshd-cmdline"); n != 1 {
		t.Errorf("sshd cmdline fetched %d times, want 1", n)
	}
	if n := a.count("GET /i/given-cmdline"); n != 0 {
		t.Errorf("a given cmdline was fetched %d times", n)
	}

	// The fetched cmdline ends up in the script.
	out, err := ipxe.Render(devs, got, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out[0].Script, "ip=dhcp nomodeset ro serial console=ttyS1 page_poison=1\n") {
		t.Errorf("fetched cmdline (with its own ttyS1) not used as expected:\n%s", out[0].Script)
	}
}

func TestFetchCmdlinesReportsEveryFailure(t *testing.T) {
	a := newArtifacts(t, map[string]string{"/i/ok-cmdline": "x"})
	a.status["/i/broken-cmdline"] = http.StatusInternalServerError
	dead := deadURL(t)
	devs := []spec.Device{
		device(1, "baremetal_0", img("ok", a.URL+"/i")),
		device(2, "baremetal_0", img("missing", a.URL+"/i")),
		device(3, "baremetal_0", img("broken", a.URL+"/i")),
		device(4, "baremetal_0", img("dead", dead+"/i")),
	}
	_, err := ipxe.FetchCmdlines(context.Background(), a.Client(), devs)
	var ae *ipxe.ArtifactsError
	if !errors.As(err, &ae) {
		t.Fatalf("want *ArtifactsError, got %v", err)
	}
	msg := err.Error()
	for _, w := range []string{
		"fetch cmdline: 3 of 4 URLs failed:",
		"GET " + a.URL + "/i/missing-cmdline: 404 Not Found",
		"GET " + a.URL + "/i/broken-cmdline: 500 Internal Server Error",
		"GET " + dead + "/i/dead-cmdline: ",
		"connection refused",
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("error lacks %q:\n%s", w, msg)
		}
	}
	if strings.Contains(msg, "ok-cmdline") {
		t.Errorf("error names a URL that worked:\n%s", msg)
	}
}

func TestFetchCmdlineTimeoutNamesURL(t *testing.T) {
	release := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer s.Close()
	defer close(release)
	client := &http.Client{Timeout: 50 * time.Millisecond}
	_, err := ipxe.FetchCmdlines(context.Background(), client, []spec.Device{device(1, "baremetal_0", img("slow", s.URL))})
	if err == nil {
		t.Fatal("no error from a server that never answers")
	}
	if !strings.Contains(err.Error(), "GET "+s.URL+"/slow-cmdline: ") || !strings.Contains(err.Error(), "Timeout") {
		t.Errorf("error should name the URL and the timeout: %v", err)
	}
}

func TestPreflight(t *testing.T) {
	a := newArtifacts(t, map[string]string{
		"/i/sshd-kernel":     "K",
		"/i/sshd-initrd.img": "I",
		"/j/arm-kernel":      "K",
	})
	a.status["/j/arm-initrd.img"] = http.StatusForbidden
	dead := deadURL(t)

	good := []spec.Device{
		device(1, "baremetal_0", img("sshd", a.URL+"/i")),
		device(2, "baremetal_0", img("sshd", a.URL+"/i")),
	}
	if err := ipxe.Preflight(context.Background(), a.Client(), good); err != nil {
		t.Fatalf("preflight of served artifacts: %v", err)
	}
	if n := a.count("HEAD /i/sshd-kernel"); n != 1 {
		t.Errorf("kernel HEADed %d times, want once for two devices", n)
	}
	if n := a.count("GET /i/sshd-kernel"); n != 0 {
		t.Errorf("preflight downloaded the kernel %d times", n)
	}

	bad := append(good,
		device(3, "baremetal_0", img("gone", a.URL+"/i")),
		device(4, "baremetal_2a", img("arm", a.URL+"/j")),
		device(5, "baremetal_0", img("dead", dead+"/x")),
	)
	err := ipxe.Preflight(context.Background(), a.Client(), bad)
	if err == nil {
		t.Fatal("preflight passed with missing artifacts")
	}
	msg := err.Error()
	for _, w := range []string{
		"check boot artifacts: 5 of 8 URLs failed:",
		"HEAD " + a.URL + "/i/gone-kernel: 404 Not Found",
		"HEAD " + a.URL + "/i/gone-initrd.img: 404 Not Found",
		"HEAD " + a.URL + "/j/arm-initrd.img: 403 Forbidden",
		"HEAD " + dead + "/x/dead-kernel: ",
		"HEAD " + dead + "/x/dead-initrd.img: ",
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("error lacks %q:\n%s", w, msg)
		}
	}
	if strings.Count(msg, "connection refused") != 2 {
		t.Errorf("want two connection refused failures:\n%s", msg)
	}
	var ae *ipxe.ArtifactsError
	if !errors.As(err, &ae) || len(ae.Failures) != 5 {
		t.Fatalf("want 5 failures in an *ArtifactsError, got %#v", err)
	}
	var fe *ipxe.FetchError
	if !errors.As(ae.Failures[0], &fe) {
		t.Errorf("failures should be *FetchError, got %T", ae.Failures[0])
	}
}

func TestPreflightFallsBackToGetWhenHeadRefused(t *testing.T) {
	a := newArtifacts(t, map[string]string{"/i/sshd-kernel": "K", "/i/sshd-initrd.img": "I"})
	a.noHead = true
	devs := []spec.Device{device(1, "baremetal_0", img("sshd", a.URL+"/i"))}
	if err := ipxe.Preflight(context.Background(), a.Client(), devs); err != nil {
		t.Fatal(err)
	}
	if n := a.count("GET /i/sshd-kernel"); n != 1 {
		t.Errorf("GET fallback made %d requests, want 1", n)
	}
}

func TestPreflightStopsOnCancel(t *testing.T) {
	a := newArtifacts(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := ipxe.Preflight(ctx, a.Client(), []spec.Device{device(1, "baremetal_0", img("sshd", a.URL))})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
}
