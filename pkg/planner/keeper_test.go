package planner

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// deletedIDs is the ids a plan deletes.
func deletedIDs(p Plan) []string {
	var out []string
	for _, c := range p.Changes {
		if c.Action == Delete {
			out = append(out, c.DeviceID())
		}
	}
	slices.Sort(out)
	return out
}

// Issue 14 case 1: two applies saw one slot with two devices at different
// moments — the newer one still provisioning, then active. Each kept a
// different device and deleted the other's keeper: the slot ended empty.
// Every observer must keep the same device whatever the moment.
func TestDuplicateKeeperIsTheSameAtEveryMoment(t *testing.T) {
	for _, tc := range []struct {
		name     string
		old, new []string // the two devices' states at the successive moments
	}{
		{"new one comes up", []string{StateActive, StateActive, StateActive}, []string{StateQueued, StateProvisioning, StateActive}},
		{"old one is failed", []string{StateFailed, StateFailed}, []string{StateProvisioning, StateActive}},
		{"both come up", []string{StateProvisioning, StateActive, StateActive}, []string{StateQueued, StateProvisioning, StateActive}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var deleted [][]string
			for i := range tc.old {
				in := baseInput()
				d := findDesired(&in, "web/ams1/1")
				dropLive(&in, "web/ams1/1")
				older, newer := liveOf(*d, "d-zz"), liveOf(*d, "d-aa")
				older.State, older.CreatedAt = tc.old[i], t0
				newer.State, newer.CreatedAt = tc.new[i], t0.Add(10*time.Minute)
				in.Live = append(in.Live, newer, older)
				p, err := Compute(in)
				if err != nil {
					t.Fatal(err)
				}
				deleted = append(deleted, deletedIDs(p))
			}
			// The union of what the observers delete must leave the slot a device.
			all := map[string]bool{}
			for _, ds := range deleted {
				for _, id := range ds {
					all[id] = true
				}
			}
			if len(all) != 1 {
				t.Errorf("observers deleted %v: together they empty the slot", deleted)
			}
			for i := range deleted {
				if !slices.Equal(deleted[i], deleted[0]) {
					t.Errorf("moment %d deletes %v, moment 0 %v", i, deleted[i], deleted[0])
				}
			}
		})
	}
}

// The delete of a duplicate names the device its slot keeps, so that the
// executor can wait for that slot to have a ready device before deleting.
func TestDuplicateDeleteNamesItsKeeper(t *testing.T) {
	in := baseInput()
	d := findDesired(&in, "web/ams1/1")
	dup := liveOf(*d, "d-99")
	dup.CreatedAt = t0.Add(time.Hour)
	in.Live = append(in.Live, dup)
	p, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	keep := findLive(&in, "web/ams1/1").ID
	if len(p.Changes) != 1 || p.Changes[0].DeviceID() != "d-99" || p.Changes[0].Keeper != keep {
		t.Fatalf("changes %+v, want the delete of d-99 keeping %s", p.Changes, keep)
	}
	// Scale-down deletes keep nothing.
	in = baseInput()
	in.Live = append(in.Live, orphan("d-77", "web/ams1/9", "ams1"))
	p, _ = Compute(in)
	for _, c := range p.Changes {
		if c.Keeper != "" {
			t.Errorf("%s of %s names keeper %q", c.Action, c.DeviceID(), c.Keeper)
		}
	}
}

// Issue 14 case 4: kill -9 between a rebuild's PUT and its reboot left
// devices on the old image while the next plan said "No changes". A
// device whose PUT carried the pending marker is rebuilt, even though its
// userdata already is the new script.
func TestPendingRebuildIsRebuiltAgain(t *testing.T) {
	in := baseInput()
	d := findDesired(&in, "web/ams1/2")
	l := findLive(&in, "web/ams1/2")
	oldRev := "0123456789ab"
	var tags []string
	for _, tg := range l.Tags {
		if tg != spec.TagRev+d.Rev {
			tags = append(tags, tg)
		}
	}
	l.Tags = append(tags, spec.TagRev+oldRev, TagPending+d.Rev)
	p, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Action != Rebuild {
		t.Fatalf("changes %v, want one rebuild", p.Changes)
	}
	want := fmt.Sprintf("rebuild to rev %s was interrupted before its reboot or reinstall was accepted", d.Rev)
	if !slices.Contains(p.Changes[0].Reasons, want) {
		t.Errorf("reasons %q, want %q", p.Changes[0].Reasons, want)
	}
	if l.Pending() != d.Rev || l.Rev() != oldRev {
		t.Errorf("Pending %q Rev %q", l.Pending(), l.Rev())
	}
}
