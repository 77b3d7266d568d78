// Package executor applies a planner.Plan: it schedules API mutations
// under concurrency and rollout budgets, waits for devices, and reports
// progress as events. It reaches the world only through Cloud.
package executor

import (
	"context"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Cloud is the little the executor needs from the API: a backend (another
// API, another provider) plugs in by implementing these six methods. pkg/packet
// implements it for the real service; tests use in-memory fakes.
type Cloud interface {
	// Create makes one device, once. It never retries by itself: an error
	// may be ambiguous (the device may exist): it then has an Ambiguous() bool method that says so.
	Create(ctx context.Context, d spec.Device) (planner.Live, error)
	// List returns the fleet's live devices (one tag-filtered listing).
	List(ctx context.Context) ([]planner.Live, error)
	// Update changes the mutable attributes of a device in one PUT.
	Update(ctx context.Context, id string, u planner.DeviceUpdate) error
	// Reboot reboots a device (rebuild strategy reboot: with always_pxe it
	// boots the new script). Like Create it is sent once: an error may be
	// ambiguous (the reboot may have happened).
	Reboot(ctx context.Context, id string) error
	// Reinstall reinstalls a device in place (rebuild strategy reinstall),
	// sent once like Reboot.
	Reinstall(ctx context.Context, id string) error
	// Delete deletes a device; a device that is already gone is success.
	Delete(ctx context.Context, id string) error
}

// Configurer is a Cloud that also applies per-device settings the API only
// takes once a device exists (a group attribute such as a network type or
// VLANs is set by calls on the provisioned device, not in the create). It
// is optional: a Cloud without it has no such settings. Configure makes
// the device's settings match d and must be idempotent: the executor calls
// it after every create, replacement and rebuild once the device is ready
// (not with --wait none: the next apply's plan then shows what is left),
// and after every update.
type Configurer interface {
	Configure(ctx context.Context, id string, d spec.Device) error
}
