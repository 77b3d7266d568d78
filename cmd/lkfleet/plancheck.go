package main

import (
	"fmt"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// checkTargets refuses a plan that would act outside fleet: every device a
// change touches must be in the fleet's own tag-filtered listing taken
// under the lease (live), in the change's slot, and every desired device
// must belong to the fleet. A saved plan's checksum detects accidents, not
// edits: someone who recomputes it could otherwise point a delete at a
// device of another owner, whose listing fingerprint is untouched.
func checkTargets(p planner.Plan, fleet *spec.Fleet, live []planner.Live) error {
	if p.Project != "" && p.Project != fleet.Project {
		return fmt.Errorf("the plan is for project %s, not %s: refusing it", p.Project, fleet.Project)
	}
	listed := make(map[string]planner.Live, len(live))
	for _, l := range live {
		listed[l.ID] = l
	}
	for _, c := range p.Changes {
		ids := []string{c.DeviceID}
		if c.Live != nil && c.Live.ID != c.DeviceID {
			ids = append(ids, c.Live.ID)
		}
		for _, id := range ids {
			if id == "" {
				if c.Action != planner.Create {
					return fmt.Errorf("the plan would %s slot %s without naming its device: refusing it", c.Action, c.Slot)
				}
				continue
			}
			l, ok := listed[id]
			if !ok {
				return fmt.Errorf("the plan would %s device %s (slot %s), which is not one of fleet %q's devices: refusing it", c.Action, id, c.Slot, fleet.Name)
			}
			if l.Slot != c.Slot {
				return fmt.Errorf("the plan would %s device %s as slot %s, but that device is slot %s: refusing it", c.Action, id, c.Slot, l.Slot)
			}
		}
		if d := c.Desired; d != nil && (d.Fleet != fleet.Name || d.Slot != c.Slot) {
			return fmt.Errorf("the plan's slot %s holds a device for fleet %q slot %s: refusing it", c.Slot, d.Fleet, d.Slot)
		}
	}
	return nil
}
