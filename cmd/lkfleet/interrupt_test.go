package main

import (
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
