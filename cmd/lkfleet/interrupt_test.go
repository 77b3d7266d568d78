package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/lkfleet/lkfleet/chaos/harness"
)

// TestInterruptTrials presses Ctrl-C (cancels Run's context) before,
// during and after creates, while waiting, during deletes and during a
// rebuild, on a simulator with faults: each apply exits 130 within a few
// seconds with a summary that accounts for every change, the next apply
// converges without duplicates, and no goroutine outlives the runs.
func TestInterruptTrials(t *testing.T) {
	if testing.Short() {
		t.Skip("interrupt trials skipped in -short mode")
	}
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	results, err := harness.Interrupts(t.Context(), harness.InterruptConfig{
		Dir:                 t.TempDir(),
		Count:               3,
		Seed:                uint64(time.Now().UnixNano()),
		FaultRate:           0.03,
		AmbiguousCreateRate: 0.03,
		ListLag:             200 * time.Millisecond,
		ProvisionTime:       300 * time.Millisecond,
		Poll:                50 * time.Millisecond,
		Logf:                t.Logf,
	}, inProcess)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 5 {
		t.Fatalf("%d trials ran, want 5", len(results))
	}
	for _, r := range results {
		for _, p := range r.Problems {
			t.Errorf("%s: %s", r.Name, p)
		}
	}
}

// TestSimulatorRestartMidApply stops the simulator (state file kept) a
// third of the way through the creates: back after a second, the apply
// rides it out; never back, the apply exits 1 naming the API. Either way
// the next apply converges without duplicates.
func TestSimulatorRestartMidApply(t *testing.T) {
	if testing.Short() {
		t.Skip("restart trials skipped in -short mode")
	}
	for _, tc := range []struct {
		name  string
		down  time.Duration
		extra []string
	}{
		{"back after 1s", time.Second, nil},
		{"stays down", 0, []string{"--timeout", "8s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := harness.Restart(t.Context(), harness.RestartConfig{
				Dir: t.TempDir(), Count: 2, ProvisionTime: 300 * time.Millisecond, Poll: 50 * time.Millisecond,
				Down: tc.down, ExtraArgs: tc.extra,
			}, inProcess)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("apply exited %d after %s; resumes %d; stderr: %s", res.Code, res.Took.Round(time.Millisecond), res.Resumes, res.Stderr)
			for _, p := range res.Problems {
				t.Error(p)
			}
		})
	}
}

// TestSIGINTSubprocess builds lkfleet and sends the process a real SIGINT
// before and during creates: it exits 130 within a few seconds with a
// truthful summary, and the next apply converges.
func TestSIGINTSubprocess(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess build skipped in -short mode")
	}
	bin := filepath.Join(t.TempDir(), "lkfleet")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	results, err := harness.Interrupts(t.Context(), harness.InterruptConfig{
		Dir:           t.TempDir(),
		Count:         3,
		Trials:        2,
		ListLag:       200 * time.Millisecond,
		ProvisionTime: 300 * time.Millisecond,
		Poll:          50 * time.Millisecond,
		Logf:          t.Logf,
	}, harness.Subprocess(bin))
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("%d trials ran, want 2", len(results))
	}
	for _, r := range results {
		if r.Code != ExitInterrupted {
			t.Errorf("%s: exit %d, want 130", r.Name, r.Code)
		}
		for _, p := range r.Problems {
			t.Errorf("%s: %s", r.Name, p)
		}
	}
}
