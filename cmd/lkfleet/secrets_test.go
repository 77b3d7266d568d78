package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// TestTokenNeverShown runs the whole lifecycle with --debug (every request
// and response dumped) and JSON output, through API faults and a refused
// token, and greps every output and the saved plan for the token.
func TestTokenNeverShown(t *testing.T) {
	e := newE2E(t, packetsim.Config{FaultRate: 0.1, Seed: 3})
	e.write(fmt.Sprintf(e2eFleet, "v1", 2))
	planFile := filepath.Join(e.dir, "lab.plan")
	var all strings.Builder
	// run accepts any of the exit codes in want. Under 10 % faults a
	// reboot whose request and resend both fail is, rightly, a failed
	// change (exit 1): what matters here is what the outputs contain.
	run := func(want []int, args ...string) {
		t.Helper()
		out, errs, code := e.run(args...)
		if !slices.Contains(want, code) {
			t.Fatalf("lkfleet %s: exit %d, want one of %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errs)
		}
		all.WriteString(out + errs)
	}
	ok, okOrFailed := []int{0}, []int{0, 1}
	run(ok, "validate", "-f", e.fleet)
	run(ok, "plan", "-f", e.fleet, "--debug", "-o", "json", "--out", planFile)
	run(okOrFailed, "apply", "-f", e.fleet, "--debug", "-o", "json", "--auto-approve", "--poll-interval", "20ms", planFile)
	run(ok, "status", "-f", e.fleet, "--debug", "-o", "json")
	run(ok, "render", "-f", e.fleet)
	run(okOrFailed, "apply", "-f", e.fleet, "--debug", "-o", "json", "--auto-approve", "--poll-interval", "20ms", "--rebuild", "all")
	run(okOrFailed, "destroy", "-f", e.fleet, "--debug", "-o", "json", "--auto-approve")
	// A token the API refuses is not echoed either.
	e.vars["PACKET_AUTH_TOKEN"] = e2eToken + "-wrong"
	out, errs, code := runCLI(t, e.vars, "plan", "-f", e.fleet, "--debug")
	if code != 1 || strings.Contains(out+errs, e2eToken) {
		t.Fatalf("refused token: exit %d, output shows the token: %v", code, strings.Contains(out+errs, e2eToken))
	}
	all.WriteString(out + errs)

	plan, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plan), e2eToken) {
		t.Error("the saved plan contains the token")
	}
	got := all.String()
	if strings.Contains(got, e2eToken) {
		t.Error("some output contains the token")
	}
	// The debug dumps did run and did carry the header, redacted.
	for _, want := range []string{"X-Auth-Token: [REDACTED]", `"kind":"summary"`, "> POST "} {
		if !strings.Contains(got, want) {
			t.Errorf("outputs lack %q: the test did not see what it greps", want)
		}
	}
}

// TestSavedPlanTamperedOrForeignIsRefused edits a saved plan, and applies
// one saved for another fleet: both are refused before any API change.
func TestSavedPlanTamperedOrForeignIsRefused(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	planFile := filepath.Join(e.dir, "lab.plan")
	e.mustRun(0, "plan", "-f", e.fleet, "--out", planFile)
	data, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}

	// Tampered: one more device slipped into the plan body.
	tampered := filepath.Join(e.dir, "tampered.plan")
	edited := strings.Replace(string(data), "web-ams1-1", "web-ams1-9", 1)
	if edited == string(data) {
		t.Fatal("the plan does not name web-ams1-1: nothing to tamper with")
	}
	if err := os.WriteFile(tampered, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := e.run("apply", "-f", e.fleet, "--auto-approve", tampered)
	if code != 1 || !strings.Contains(errs, tampered) {
		t.Fatalf("tampered plan: exit %d, stderr %q", code, errs)
	}

	// Truncated.
	cut := filepath.Join(e.dir, "cut.plan")
	if err := os.WriteFile(cut, data[:len(data)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errs, code := e.run("apply", "-f", e.fleet, "--auto-approve", cut); code != 1 || !strings.Contains(errs, cut) {
		t.Fatalf("truncated plan: exit %d, stderr %q", code, errs)
	}

	// Another fleet's plan: same project, a fleet named differently.
	other := filepath.Join(e.dir, "other.yml")
	if err := os.WriteFile(other, []byte(strings.NewReplacer("fleet: e2e", "fleet: other", "IMAGES", e.images).Replace(fmt.Sprintf(e2eFleet, "v1", 1))), 0o644); err != nil {
		t.Fatal(err)
	}
	otherPlan := filepath.Join(e.dir, "other.plan")
	e.mustRun(0, "plan", "-f", other, "--out", otherPlan)
	_, errs, code = e.run("apply", "-f", e.fleet, "--auto-approve", otherPlan)
	if code != 1 || !strings.Contains(errs, `for fleet "other", not "e2e"`) {
		t.Fatalf("other fleet's plan: exit %d, stderr %q", code, errs)
	}
	st := e.srv.Sim.Stats()
	for route, n := range st.Requests {
		// POST /capacity is plan's capacity check, a read.
		if !strings.HasPrefix(route, "GET ") && !strings.Contains(route, "/capacity") && n > 0 {
			t.Errorf("a refused plan made %d %s requests", n, route)
		}
	}
}
