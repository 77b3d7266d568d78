package executor

import (
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// EventKind names what happened.
type EventKind string

// The events Apply reports, in roughly the order a device sees them.
const (
	WaveStarted   EventKind = "wave_started"   // Wave, Message: zones
	WaveDone      EventKind = "wave_done"      // Wave
	ChangeStarted EventKind = "change_started" // a mutation was sent (Action)
	ChangeDone    EventKind = "change_done"    // the API accepted it
	ChangeFailed  EventKind = "change_failed"  // the API refused it (Err)
	DeviceState   EventKind = "device_state"   // a watched device changed State
	DeviceReady   EventKind = "device_ready"   // active (or booted with --wait booted)
	DeviceFailed  EventKind = "device_failed"  // failed state or failed boot (Message: last event)
	Retrying      EventKind = "retrying"       // an ambiguous create or failed device is retried
	Halted        EventKind = "halted"         // the rollout stopped (Message: why, how to resume)
	Info          EventKind = "info"           // anything else worth a line
)

// Event is one thing that happened during Apply. Events are delivered to
// Options.OnEvent from several goroutines; the receiver serialises.
type Event struct {
	Time     time.Time
	Kind     EventKind
	Wave     int // 0-based wave index, -1 when not about a wave
	Action   planner.Action
	Slot     string
	Hostname string
	DeviceID string
	State    string
	Message  string
	Err      error
}
