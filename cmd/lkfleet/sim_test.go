package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the simulator's log goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startSimCLI runs `lkfleet sim args...` until the returned stop is called;
// stop returns the exit code.
func startSimCLI(t *testing.T, args ...string) (out, errs *lockedBuffer, stop func() int) {
	t.Helper()
	return startSimCLIEnv(t, nil, args...)
}

// startSimCLIEnv is startSimCLI with environment variables.
func startSimCLIEnv(t *testing.T, vars map[string]string, args ...string) (out, errs *lockedBuffer, stop func() int) {
	t.Helper()
	out, errs = &lockedBuffer{}, &lockedBuffer{}
	env := &Env{In: strings.NewReader(""), Out: out, Err: errs, Getenv: func(k string) string { return vars[k] }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Run(ctx, append([]string{"sim", "--listen", "127.0.0.1:0"}, args...), env) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "PACKET_PROJECT_ID=") {
		select {
		case code := <-done:
			cancel()
			t.Fatalf("sim exited early with %d: %s", code, errs.String())
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("sim printed nothing in time; stderr %q", errs.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	var once sync.Once
	code := 0
	stop = func() int {
		once.Do(func() { cancel(); code = <-done })
		return code
	}
	t.Cleanup(func() { stop() })
	return out, errs, stop
}

// simVars parses the KEY=value lines the command prints first.
func simVars(out string) map[string]string {
	vars := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "PACKET_") {
			vars[k] = v
		}
	}
	return vars
}

func TestSimPrintsCredentialsLogsRequestsAndStops(t *testing.T) {
	out, errs, stop := startSimCLI(t, "--rate-limit", "0")
	first, _, _ := strings.Cut(out.String(), "\n")
	if !strings.HasPrefix(first, "PACKET_API_URL=http://127.0.0.1:") || !strings.HasSuffix(first, "/metal/v1/") {
		t.Fatalf("first line %q, want PACKET_API_URL=http://127.0.0.1:PORT/metal/v1/", first)
	}
	vars := simVars(out.String())
	if len(vars["PACKET_AUTH_TOKEN"]) < 32 || len(vars["PACKET_PROJECT_ID"]) != 36 {
		t.Fatalf("generated credentials missing: %v", vars)
	}
	req, _ := http.NewRequest("GET", vars["PACKET_API_URL"]+"projects/"+vars["PACKET_PROJECT_ID"]+"/devices", nil)
	req.Header.Set("X-Auth-Token", vars["PACKET_AUTH_TOKEN"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("list with printed credentials: %d", resp.StatusCode)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(out.String(), "GET /metal/v1/projects/") {
		if time.Now().After(deadline) {
			t.Fatalf("no request log line in %q", out.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "/devices 200 ") {
		t.Errorf("log line lacks status: %q", out.String())
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d after cancel, stderr %q", code, errs.String())
	}
}

func TestSimGivenTokenIsNotPrintedAndStatePersists(t *testing.T) {
	state := filepath.Join(t.TempDir(), "sim.json")
	const project = "6d1f7b0e-8a44-4c3e-9f1b-2b7c5a9e0d11"
	out, _, stop := startSimCLI(t, "--quiet", "--token", "secret-token", "--project", project,
		"--state", state, "--provision-time", "0s")
	if strings.Contains(out.String(), "secret-token") {
		t.Fatalf("given token printed: %q", out.String())
	}
	vars := simVars(out.String())
	body := `{"plan":"baremetal_0","facility":"ams1","operating_system":"ubuntu_22_04","hostname":"kept","tags":[]}`
	req, _ := http.NewRequest("POST", vars["PACKET_API_URL"]+"projects/"+project+"/devices", strings.NewReader(body))
	req.Header.Set("X-Auth-Token", "secret-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if strings.Contains(out.String(), "POST ") {
		t.Errorf("--quiet still logged requests: %q", out.String())
	}
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatalf("state file not written on shutdown: %v", err)
	}
	var st struct {
		Devices []struct{ Hostname string } `json:"devices"`
	}
	if err := json.Unmarshal(b, &st); err != nil || len(st.Devices) != 1 || st.Devices[0].Hostname != "kept" {
		t.Fatalf("state file = %s (%v), want the one device", b, err)
	}
}

func TestSimRejectsBadFlags(t *testing.T) {
	_, errs, code := runCLI(t, nil, "sim", "--fault-rate", "2", "--rate-limit", "-1")
	if code != ExitError || !strings.Contains(errs, "--fault-rate must be between 0 and 1") || !strings.Contains(errs, "must not be negative") {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
}
