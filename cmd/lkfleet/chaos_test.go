package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/chaos/harness"
)

// inProcess runs the CLI in this process; cancelling ctx is Ctrl-C.
func inProcess(ctx context.Context, vars map[string]string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	env := &Env{
		In:     strings.NewReader(""),
		Out:    &out,
		Err:    &errb,
		Getenv: func(k string) string { return vars[k] },
	}
	code := Run(ctx, args, env)
	return out.String(), errb.String(), code
}

// TestChaos60 is the CI-sized chaos run (DESIGN section 10): 60 devices
// in three zones plus foreign devices, against a simulator with 5% faults,
// 5% ambiguous creates, 3% failed provisions and 1 s list lag. `make
// chaos` runs the full-size version.
func TestChaos60(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run skipped in -short mode")
	}
	res, err := harness.Chaos(t.Context(), harness.ChaosConfig{
		Dir:                 t.TempDir(),
		Count:               10,
		Foreign:             10,
		Seed:                uint64(time.Now().UnixNano()),
		FaultRate:           0.05,
		AmbiguousCreateRate: 0.05,
		FailProvisionRate:   0.03,
		ListLag:             time.Second,
		ProvisionTime:       200 * time.Millisecond,
		Poll:                100 * time.Millisecond,
		Logf:                t.Logf,
	}, inProcess)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: %d devices, %d applies, codes %v, faults %v, %d creates, took %s",
		res.Seed, res.Devices, res.Applies, res.Codes, res.Faults, res.Creates, res.Took.Round(time.Millisecond))
	for _, p := range res.Problems {
		t.Errorf("seed %d: %s", res.Seed, p)
	}
	if len(res.Faults) == 0 {
		t.Errorf("seed %d: the simulator injected no faults: the run proved nothing", res.Seed)
	}
}
