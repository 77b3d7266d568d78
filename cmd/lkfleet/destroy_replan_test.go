package main

import (
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// TestDestroyReplanRefusesNewDevices: a destroy planned again under the
// lease may drop devices or see them change state, but never deletes a
// device the user did not confirm.
func TestDestroyReplanRefusesNewDevices(t *testing.T) {
	del := func(ids ...string) planner.Plan {
		var p planner.Plan
		for _, id := range ids {
			p.Changes = append(p.Changes, planner.Change{Action: planner.Delete, Live: &planner.Live{ID: id}})
		}
		return p
	}
	if err := sameDevices(del("a", "b"), del("b")); err != nil {
		t.Errorf("a device gone meanwhile: %v", err)
	}
	if err := sameDevices(del("a", "b"), del("a", "b")); err != nil {
		t.Errorf("the same devices: %v", err)
	}
	err := sameDevices(del("a"), del("a", "c"))
	if err == nil || !strings.Contains(err.Error(), "device c ") {
		t.Errorf("a new device: %v, want a refusal naming c", err)
	}
}
