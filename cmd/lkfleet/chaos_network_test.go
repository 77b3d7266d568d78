package main

import (
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/chaos/harness"
)

// TestChaosNetwork is a chaos run whose worker group converts its ports to
// hybrid with a VLAN: port calls under 5% faults still converge within the
// applies allowed, with no duplicate and no foreign device touched (their
// ports included: the check compares each foreign device's whole JSON).
func TestChaosNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos run skipped in -short mode")
	}
	res, err := harness.Chaos(t.Context(), harness.ChaosConfig{
		Dir:                 t.TempDir(),
		Count:               2,
		Foreign:             4,
		Seed:                uint64(time.Now().UnixNano()),
		FaultRate:           0.05,
		AmbiguousCreateRate: 0.05,
		FailProvisionRate:   0.03,
		ListLag:             time.Second,
		ProvisionTime:       200 * time.Millisecond,
		Poll:                100 * time.Millisecond,
		NetworkType:         "hybrid",
		MaxApplies:          3,
		Logf:                t.Logf,
	}, inProcess)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: %d devices, %d applies, codes %v, faults %v, took %s",
		res.Seed, res.Devices, res.Applies, res.Codes, res.Faults, res.Took.Round(time.Millisecond))
	for _, p := range res.Problems {
		t.Errorf("seed %d: %s", res.Seed, p)
	}
}
