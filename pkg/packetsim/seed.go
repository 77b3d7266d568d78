package packetsim

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// SeedDevice describes a device to put straight into the simulator's
// state, without API calls or rate limits: a foreign device, or a fleet
// device that already exists. Zero fields take the defaults noted.
type SeedDevice struct {
	ID        string // "" = generated
	Hostname  string // "" = generated
	Tags      []string
	Plan      string // "" = baremetal_0
	Zone      string // facility or metro code; "" = ams1
	OS        string // "" = custom_ipxe
	State     string // active (default), failed, inactive, or provisioning (boots as a new device)
	AlwaysPXE bool
	// IPXEScriptURL and Userdata are the boot config (not validated).
	IPXEScriptURL string
	Userdata      string
	CreatedAt     time.Time // zero = now
	// UserState, if set ("running", "succeeded" or "failed"), adds one
	// user state event (type user.<code>) as if the device had booted.
	UserState string
}

// Seed adds devices in bulk and returns their ids. It ignores capacity and
// list lag is measured from CreatedAt.
func (s *Sim) Seed(devs ...SeedDevice) ([]string, error) {
	now := s.now()
	ids := make([]string, 0, len(devs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sd := range devs {
		p := s.cat.planBy[cmp.Or(sd.Plan, "baremetal_0")]
		zone := strings.ToLower(cmp.Or(sd.Zone, "ams1"))
		f := s.cat.facBy[zone]
		if f == nil {
			if m := s.cat.metroBy[zone]; m != nil {
				for _, x := range s.cat.facilities {
					if x.Metro == m {
						f = x
						break
					}
				}
			}
		}
		os := cmp.Or(sd.OS, "custom_ipxe")
		if p == nil || f == nil || s.cat.osJSON[os] == nil {
			return ids, fmt.Errorf("seed device %d (%q): unknown plan %q, zone %q or operating system %q", i, sd.Hostname, sd.Plan, sd.Zone, os)
		}
		id := s.freshID()
		if sd.ID != "" {
			u, ok := parseUUID(strings.ToLower(sd.ID))
			if !ok || s.devs[u] != nil {
				return ids, fmt.Errorf("seed device %d (%q): id %q is not a new UUID", i, sd.Hostname, sd.ID)
			}
			id = u
		}
		created := sd.CreatedAt
		if created.IsZero() {
			created = now
		}
		s.seq++
		d := &device{
			id: id, seq: s.seq, hostname: cmp.Or(sd.Hostname, "seed-"+id.String()[:8]), tags: slices.Clone(sd.Tags),
			plan: p, fac: f, os: os, alwaysPXE: sd.AlwaysPXE, ipxeURL: sd.IPXEScriptURL, userdata: sd.Userdata,
			billing: "hourly", created: created, updated: created, phase: phActive, phaseAt: created,
		}
		switch sd.State {
		case "failed":
			d.phase = phFailed
		case "inactive":
			d.phase = phInactive
		case "provisioning", "queued":
			d.phase, d.phaseAt, d.phaseDur = phProvision, now, s.cfg.ProvisionTime
			if os == "custom_ipxe" {
				s.scheduleBoot(d, now.Add(d.phaseDur), false)
			}
		}
		if sd.UserState != "" {
			u := userState{State: sd.UserState, Code: UserCodeBooted, Message: "booted"}
			switch sd.UserState {
			case UserStateFailed:
				u.Code, u.Message = UserCodeBootFailed, "seeded boot failure"
			case UserStateRunning:
				u.Code, u.Message = UserCodeBooting, "booting"
			}
			d.events = []event{{id: s.newID(), at: created, typ: userStateEventType(u.Code), state: u.State, body: u.Message}}
		}
		s.insert(d)
		ids = append(ids, d.id.String())
	}
	s.markDirty()
	return ids, nil
}
