package main

import (
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/chaos/harness"
)

// TestChaosBatch is the chaos run with rollout.create_batch: 60 devices
// in three waves created through batch requests of 10 against a
// simulator with 5% faults, 5% ambiguous creates (a batch answer lost
// after the batch acted), 3% failed provisions and 1 s list lag, at
// millisecond timings. It must converge within two applies with 0
// duplicates, foreign devices untouched, and the creates must have gone
// out mostly in batches.
//
// A second run loses half of the create answers, so that ambiguous batch
// answers are certain to happen and to be resolved by the slot lookup.
func TestChaosBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run skipped in -short mode")
	}
	for _, tc := range []struct {
		name      string
		ambiguous float64
	}{{"chaos settings", 0.05}, {"half the answers lost", 0.5}} {
		t.Run(tc.name, func(t *testing.T) { chaosBatch(t, tc.ambiguous) })
	}
}

func chaosBatch(t *testing.T, ambiguous float64) {
	const batch = 10
	res, err := harness.Chaos(t.Context(), harness.ChaosConfig{
		Dir:                 t.TempDir(),
		Count:               10,
		Foreign:             10,
		Seed:                uint64(time.Now().UnixNano()),
		FaultRate:           0.05,
		AmbiguousCreateRate: ambiguous,
		FailProvisionRate:   0.03,
		ListLag:             time.Second,
		ProvisionTime:       200 * time.Millisecond,
		Poll:                100 * time.Millisecond,
		CreateBatch:         batch,
		Logf:                t.Logf,
	}, inProcess)
	if err != nil {
		t.Fatal(err)
	}
	batches, singles := res.Requests["POST /projects/{id}/devices/batch"], res.Requests["POST /projects/{id}/devices"]
	t.Logf("seed %d: %d devices, %d applies, codes %v, faults %v, %d creates in %d batch and %d single requests, took %s",
		res.Seed, res.Devices, res.Applies, res.Codes, res.Faults, res.Creates, batches, singles, res.Took.Round(time.Millisecond))
	for _, p := range res.Problems {
		t.Errorf("seed %d: %s", res.Seed, p)
	}
	if res.Duplicates != 0 || res.ListedDuplicates != 0 {
		t.Errorf("seed %d: %d duplicates (%d listed)", res.Seed, res.Duplicates, res.ListedDuplicates)
	}
	// Each of the three waves holds 20 creates: two batches of 10 each,
	// plus whatever faults sent again.
	if batches < 6 {
		t.Errorf("seed %d: %d batch requests, want at least 6", res.Seed, batches)
	}
	if singles >= res.Devices/2 {
		t.Errorf("seed %d: %d creates sent alone for %d devices: batching did not carry the creates", res.Seed, singles, res.Devices)
	}
	if ambiguous >= 0.5 && res.Faults["ambiguous_create"] == 0 {
		t.Errorf("seed %d: no create answer was lost: the run proved nothing about ambiguous batches", res.Seed)
	}
	if len(res.Faults) == 0 {
		t.Errorf("seed %d: the simulator injected no faults: the run proved nothing", res.Seed)
	}
}
