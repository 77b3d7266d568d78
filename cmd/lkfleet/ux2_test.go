package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// TestHaltSummaryHintIsTheExactCommand: a halted apply of a fleet file
// whose name needs quoting, with --project, --api-url and --wait given,
// ends with one hint that is the exact command to run again; the halt's
// count agrees with the list of failures, each failure is named once
// with the device's last event as its reason.
func TestHaltSummaryHintIsTheExactCommand(t *testing.T) {
	e := newE2E(t, packetsim.Config{FailProvisionRate: 1})
	e.fleet = filepath.Join(e.dir, "my lab.yml")
	e.write(fmt.Sprintf(e2eFleet, "v1", 2))
	project := e.vars["PACKET_PROJECT_ID"]
	out, errs, code := e.run("apply", "-f", e.fleet, "--project", project, "--api-url", e.srv.APIURL,
		"--wait", "booted", "--auto-approve", "-o", "plain", "--poll-interval", "5ms", "--failed-retries", "0", "--parallelism", "4")
	if code != ExitError {
		t.Fatalf("apply: exit %d, want 1\n%s\n%s", code, out, errs)
	}
	hint := "Fix the cause, then run `lkfleet apply -f '" + e.fleet + "' --project " + project +
		" --wait booted --api-url " + e.srv.APIURL + "` again to continue the rollout."
	if n := strings.Count(out, "again"); n != 1 || !strings.Contains(out, hint) {
		t.Errorf("want the one hint %q, got %d hints:\n%s", hint, n, out)
	}
	m := regexp.MustCompile(`(\d+) failed device\(s\) exceed max_failures 0`).FindStringSubmatch(out)
	l := regexp.MustCompile(`(?m)^(\d+) devices? failed:$`).FindStringSubmatch(out)
	if m == nil || l == nil || m[1] != l[1] {
		t.Fatalf("the halt's count and the list of failures disagree:\n%s", out)
	}
	n, _ := strconv.Atoi(l[1])
	if got := strings.Count(out, "state failed: Provisioning failed: "); got != 2*n {
		// once as a progress line, once in the summary
		t.Errorf("%d lines give the provisioning event as the reason, want %d:\n%s", got, 2*n, out)
	}
}

// TestTimeoutIsOneOutcome: --timeout that stops the run gives one
// summary that says so, what was not done, and the hint, with exit 1 and
// no second, contradicting error.
func TestTimeoutIsOneOutcome(t *testing.T) {
	e := newE2E(t, packetsim.Config{ProvisionTime: time.Minute})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	out, errs, code := e.run("apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--poll-interval", "5ms", "--timeout", "200ms")
	if code != ExitError {
		t.Fatalf("apply: exit %d, want 1\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"Apply stopped at --timeout 200ms: ", "Not done (", "Run `lkfleet apply -f " + e.fleet + "` again to finish"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "complete") || strings.Contains(out, "interrupted") || strings.TrimSpace(errs) != "" {
		t.Errorf("more than one outcome:\nstdout:\n%s\nstderr:\n%s", out, errs)
	}
}

// TestSavedPlanIsTheApproval: `apply PLANFILE` needs neither -f (the plan
// records its fleet file relative to itself) nor --auto-approve; a fleet
// file or plan -o json output given as PLANFILE is named for what it is.
func TestSavedPlanIsTheApproval(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	plans := filepath.Join(e.dir, "plans")
	if err := os.Mkdir(plans, 0o755); err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(plans, "lab.plan")
	out := e.mustRun(0, "plan", "-f", e.fleet, "--out", planFile)
	if !strings.Contains(out, "To apply exactly this plan: lkfleet apply "+planFile+"\n") {
		t.Errorf("plan --out does not give the apply command:\n%s", out)
	}
	jsonPlan := filepath.Join(e.dir, "plan.json")
	if err := os.WriteFile(jsonPlan, []byte(e.mustRun(0, "plan", "-f", e.fleet, "-o", "json")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errs, code := e.run("apply", jsonPlan)
	if code != 1 || !strings.Contains(errs, "is the output of 'lkfleet plan -o json'") {
		t.Errorf("apply of plan -o json output: exit %d, stderr %q", code, errs)
	}
	_, errs, code = e.run("apply", e.fleet)
	if code != 1 || !strings.Contains(errs, "did you mean 'lkfleet apply -f "+e.fleet+"'?") {
		t.Errorf("apply FLEETFILE: exit %d, stderr %q", code, errs)
	}
	// Not on a terminal, without -f or --auto-approve.
	out = e.mustRun(0, "apply", planFile, "-o", "plain", "--poll-interval", "5ms")
	if !strings.Contains(out, "Apply complete: 2 added") {
		t.Errorf("apply PLANFILE:\n%s", out)
	}
}

// TestStoppedReplaceCountsTheDeviceItMade: a replace stopped (here by
// --timeout) while its new device provisions made a device: the summary
// counts it as added and says so beside the change not done.
func TestStoppedReplaceCountsTheDeviceItMade(t *testing.T) {
	e := newE2E(t, packetsim.Config{ProvisionTime: time.Minute})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--wait", "none")
	out, errs, code := e.run("apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--poll-interval", "5ms",
		"--replace", "web/ams1/1", "--timeout", "300ms")
	if code != ExitError {
		t.Fatalf("apply: exit %d, want 1\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, ": 1 added, 0 rebuilt, 0 changed, 0 destroyed in ") ||
		!regexp.MustCompile(`\+/- web-ams1-1 \(web/ams1/1\): new device [0-9a-f-]{36} made`).MatchString(out) {
		t.Errorf("the summary does not count the device the replace made:\n%s", out)
	}
}

// cancelOnce cancels the first time out contains mark.
type cancelOnce struct {
	mu     sync.Mutex
	buf    strings.Builder
	mark   string
	cancel context.CancelFunc
}

func (c *cancelOnce) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	if strings.Contains(c.buf.String(), c.mark) {
		c.cancel()
	}
	return len(p), nil
}

// TestInterruptedDestroyHint: Ctrl-C during a destroy ends with the exact
// destroy command, --api-url included when it was a flag.
func TestInterruptedDestroyHint(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 2))
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain", "--wait", "none")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelOnce{mark: "deleted", cancel: cancel}
	env := &Env{In: strings.NewReader(""), Out: w, Err: &bytes.Buffer{}, Getenv: func(k string) string { return e.vars[k] }}
	code := Run(ctx, []string{"destroy", "-f", e.fleet, "--api-url", e.srv.APIURL, "--auto-approve", "-o", "plain", "--parallelism", "1"}, env)
	out := w.buf.String()
	if code != ExitInterrupted {
		t.Fatalf("destroy: exit %d, want 130\n%s\nstderr: %s", code, out, env.Err)
	}
	hint := "Run `lkfleet destroy -f " + e.fleet + " --api-url " + e.srv.APIURL + "` again to finish"
	if !strings.Contains(out, "Destroy interrupted: ") || strings.Count(out, hint) != 1 {
		t.Errorf("want one hint %q:\n%s", hint, out)
	}
}
