package main

import (
	"testing"

	"github.com/lkfleet/lkfleet/chaos/harness"
)

// TestChaosNetwork is a chaos run whose worker group converts its ports to
// hybrid with a VLAN: port calls under 5% faults still converge within the
// applies allowed, with no duplicate and no foreign device touched (their
// ports included: the check compares each foreign device's whole JSON).
func TestChaosNetwork(t *testing.T) {
	chaosRun(t, harness.ChaosConfig{Count: 2, Foreign: 4, NetworkType: "hybrid", MaxApplies: 3})
}
