// Package executor applies a planner.Plan: it schedules API mutations
// under concurrency and rollout budgets, waits for devices, and reports
// progress as events. It reaches the world only through Cloud.
package executor

import (
	"context"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Cloud is the little the executor needs from the API. pkg/packet
// implements it for the real service; tests use in-memory fakes.
type Cloud interface {
	// Create makes one device, once. It never retries by itself: an error
	// may be ambiguous (the device may exist) — see IsAmbiguous.
	Create(ctx context.Context, d spec.Device) (planner.Live, error)
	// List returns the fleet's live devices (one tag-filtered listing).
	List(ctx context.Context) ([]planner.Live, error)
	// Update changes the mutable attributes of a device in one PUT.
	Update(ctx context.Context, id string, u planner.DeviceUpdate) error
	// Action runs a device action: reboot, reinstall, power_on, power_off.
	Action(ctx context.Context, id, action string) error
	// Delete deletes a device; a device that is already gone is success.
	Delete(ctx context.Context, id string) error
}
