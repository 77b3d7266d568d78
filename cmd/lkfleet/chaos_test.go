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
	res := chaosRun(t, harness.ChaosConfig{Count: 10, Foreign: 10})
	if len(res.Faults) == 0 {
		t.Errorf("seed %d: the simulator injected no faults: the run proved nothing", res.Seed)
	}
}

// chaosRun runs one chaos run with the CI settings of TestChaos60 where cfg
// leaves them zero (a fresh seed, 5% faults, 5% ambiguous creates, 3%
// failed provisions, 1 s list lag, 200 ms provisioning, 100 ms polls) and
// fails t with every problem it found.
func chaosRun(t *testing.T, cfg harness.ChaosConfig) harness.ChaosResult {
	t.Helper()
	if testing.Short() {
		t.Skip("chaos run skipped in -short mode")
	}
	cfg.Dir, cfg.Logf = t.TempDir(), t.Logf
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	if cfg.FaultRate == 0 {
		cfg.FaultRate, cfg.AmbiguousCreateRate, cfg.FailProvisionRate = 0.05, 0.05, 0.03
	}
	if cfg.ListLag == 0 {
		cfg.ListLag = time.Second
	}
	if cfg.ProvisionTime == 0 {
		cfg.ProvisionTime = 200 * time.Millisecond
	}
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	res, err := harness.Chaos(t.Context(), cfg, inProcess)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: %d devices, %d applies, codes %v, faults %v, %d creates, took %s",
		res.Seed, res.Devices, res.Applies, res.Codes, res.Faults, res.Creates, res.Took.Round(time.Millisecond))
	for _, p := range res.Problems {
		t.Errorf("seed %d: %s", res.Seed, p)
	}
	return res
}
