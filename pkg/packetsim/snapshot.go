package packetsim

import (
	"slices"
	"time"
)

// DeviceSnapshot is one device as the simulator holds it at one instant.
type DeviceSnapshot struct {
	ID, Hostname string
	// State is what GET /devices/{id} would answer now ("deprovisioning"
	// once a DELETE was accepted).
	State   string
	Tags    []string
	Created time.Time
	// Deleted is true once a DELETE was accepted: the device lingers as
	// deprovisioning for DeprovisionTime, then is gone.
	Deleted bool
}

// Devices returns every device not yet gone, in creation order, as it is
// at this instant: without the list lag, the rate limit or injected
// faults. Chaos tests sample it while clients run, to see what a slot
// holds at a moment no listing can show.
func (s *Sim) Devices() []DeviceSnapshot {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]DeviceSnapshot, 0, len(s.order))
	for _, d := range s.order {
		if d.goneAt(now, s.cfg.DeprovisionTime) {
			continue
		}
		out = append(out, DeviceSnapshot{
			ID: d.id.String(), Hostname: d.hostname, State: d.state(now, s.cfg.DeprovisionTime),
			Tags: slices.Clone(d.tags), Created: d.created, Deleted: !d.deletedAt.IsZero(),
		})
	}
	return out
}
