package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/lease"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// mutations counts the simulator's device PUTs and actions so far.
func (e *e2e) mutations() (puts, actions int) {
	for k, n := range e.srv.Sim.Stats().Requests {
		switch {
		case strings.HasPrefix(k, "PUT /devices/"):
			puts += n
		case strings.HasPrefix(k, "POST /devices/") && strings.HasSuffix(k, "/actions"):
			actions += n
		}
	}
	return puts, actions
}

// tagsOf returns device id's tags as the API lists them.
func (e *e2e) tagsOf(id string) []string {
	e.t.Helper()
	var d struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal([]byte(e.device(id)), &d); err != nil {
		e.t.Fatal(err)
	}
	return d.Tags
}

// finishedRuns reads the ids of the finished runs the fleet's customdata
// lease record lists.
func (e *e2e) finishedRuns(fleet string) []string {
	e.t.Helper()
	var r struct {
		Runs []lease.Run `json:"runs"`
	}
	if raw, ok := e.customdata()[lease.KeyPrefix+fleet]; ok {
		if err := json.Unmarshal(raw, &r); err != nil {
			e.t.Fatal(err)
		}
	}
	var out []string
	for _, run := range r.Runs {
		out = append(out, run.ID)
	}
	return out
}

// markerRun is the run named by the pending marker in tags ("" if none).
func markerRun(tags []string) string {
	m, _ := planner.Live{Tags: tags}.Marker()
	return m.Run
}

// The nightly rebuild is two mutating requests per device: the PUT and the
// reboot. Its run's record in the lease settles the markers (plan: no
// changes; status: the new image). A device whose marker names a run the
// record does not list (a run killed between its PUT and its reboot) is
// shown on its old image by status and rebuilt by the next apply; the
// record then keeps the first run (its markers are still on the other
// devices) and, after a rebuild of every device, only the newest run.
func TestRebuildIsOnePutAndTheRebootSettledByTheLease(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain"}
	e.write(fmt.Sprintf(e2eFleet, "v1", 2))
	e.mustRun(0, apply...)

	e.write(fmt.Sprintf(e2eFleet, "v2", 2))
	puts0, acts0 := e.mutations()
	out := e.mustRun(0, apply...)
	if !strings.Contains(out, "4 rebuilt") {
		t.Fatalf("rebuild apply:\n%s", out)
	}
	if puts, acts := e.mutations(); puts-puts0 != 4 || acts-acts0 != 4 {
		t.Errorf("the rebuild of 4 devices sent %d PUTs and %d actions, want 4 and 4", puts-puts0, acts-acts0)
	}
	runs := e.finishedRuns("e2e")
	if len(runs) != 1 {
		t.Fatalf("finished runs %v, want the rebuild's", runs)
	}
	first := runs[0]
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")
	st := e.status()
	for _, d := range st {
		if !d.Current {
			t.Errorf("status after the rebuild: %s not current", d.Slot)
		}
		if r := markerRun(e.tagsOf(d.ID)); r != first {
			t.Errorf("device %s marker names run %q, want %q", d.ID, r, first)
		}
	}

	// A run killed between its PUT and its reboot, as it leaves the device:
	// the PUT's tags, naming a run no record lists.
	victim := st[0]
	tags := slices.DeleteFunc(e.tagsOf(victim.ID), func(s string) bool { return strings.HasPrefix(s, planner.TagPending) })
	var rev string
	for _, s := range tags {
		if v, ok := strings.CutPrefix(s, spec.TagRev); ok {
			rev = v
		}
	}
	tags = append(tags, planner.TagPending+planner.PendingValue("killed000000", "0123456789ab"))
	body, _ := json.Marshal(map[string]any{"tags": tags})
	e.api("PUT", "devices/"+victim.ID, string(body), nil)

	out = e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	if !strings.Contains(out, "Plan: 0 to add, 1 to rebuild") || !strings.Contains(out, "rebuild to rev "+rev+" was interrupted") {
		t.Errorf("plan after the killed rebuild:\n%s", out)
	}
	for _, d := range e.status() {
		if d.ID == victim.ID && d.Current {
			t.Errorf("status shows %s on the new image while its reboot may not have been sent", d.ID)
		}
	}
	puts0, acts0 = e.mutations()
	e.mustRun(0, apply...)
	if puts, acts := e.mutations(); puts-puts0 != 1 || acts-acts0 != 1 {
		t.Errorf("the rebuild of the killed device sent %d PUTs and %d actions, want 1 and 1", puts-puts0, acts-acts0)
	}
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")
	runs = e.finishedRuns("e2e")
	if len(runs) != 2 || runs[0] != first {
		t.Fatalf("finished runs %v, want %s (still on 3 devices) and the new run", runs, first)
	}
	second := runs[1]
	if r := markerRun(e.tagsOf(victim.ID)); r != second {
		t.Errorf("rebuilt device's marker names %q, want %q", r, second)
	}

	// Rebuild everything again: no device carries the earlier runs'
	// markers any more, so the record keeps only the newest run.
	e.write(fmt.Sprintf(e2eFleet, "v1", 2))
	e.mustRun(0, apply...)
	if runs = e.finishedRuns("e2e"); len(runs) != 1 || runs[0] == first || runs[0] == second {
		t.Errorf("finished runs %v after rebuilding every device, want only the newest", runs)
	}
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")
}

// A saved plan's rebuild is the single-PUT rebuild too, recorded at its
// release; with --lock none (no record to settle a marker) each rebuild
// takes a second PUT that clears its marker, so the next plan still has
// nothing to do.
func TestSavedPlanAndLockNoneRebuilds(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain"}
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.mustRun(0, apply...)

	e.write(fmt.Sprintf(e2eFleet, "v2", 1))
	planFile := e.dir + "/rebuild.plan"
	e.mustRun(2, "plan", "-f", e.fleet, "--out", planFile, "--detailed-exitcode")
	puts0, acts0 := e.mutations()
	e.mustRun(0, "apply", planFile, "--poll-interval", "20ms", "-o", "plain")
	if puts, acts := e.mutations(); puts-puts0 != 2 || acts-acts0 != 2 {
		t.Errorf("saved plan: %d PUTs and %d actions for 2 rebuilds, want 2 and 2", puts-puts0, acts-acts0)
	}
	if runs := e.finishedRuns("e2e"); len(runs) != 1 {
		t.Errorf("finished runs %v after the saved plan, want one", runs)
	}
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")

	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	puts0, acts0 = e.mutations()
	e.mustRun(0, append(apply, "--lock", "none")...)
	if puts, acts := e.mutations(); puts-puts0 != 4 || acts-acts0 != 2 {
		t.Errorf("--lock none: %d PUTs and %d actions for 2 rebuilds, want 4 and 2", puts-puts0, acts-acts0)
	}
	for _, d := range e.status() {
		if tags := e.tagsOf(d.ID); slices.ContainsFunc(tags, func(s string) bool { return strings.HasPrefix(s, planner.TagPending) }) || !d.Current {
			t.Errorf("--lock none: device %s tags %v current %v, want no marker and current", d.ID, tags, d.Current)
		}
	}
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode", "--lock", "none")
}

// An apply that planned while another run held the lease (its markers
// then unfinished) and waited for the lease finds, once it has it, the
// other run's record settling them: it plans again instead of rebooting
// those devices a second time.
func TestApplyReplansWhenTheHolderFinishedItsRebuilds(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain"}
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.mustRun(0, apply...)
	// Run r9 holds the lease and has PUT every device; its reboots follow.
	const run = "r9aaaaaaaaaa"
	for _, d := range e.status() {
		tags := append(e.tagsOf(d.ID), planner.TagPending+planner.PendingValue(run, "0123456789ab"))
		body, _ := json.Marshal(map[string]any{"tags": tags})
		e.api("PUT", "devices/"+d.ID, string(body), nil)
	}
	setRecord := func(rec map[string]any) {
		cd := e.customdata()
		raw, _ := json.Marshal(rec)
		cd[lease.KeyPrefix+"e2e"] = raw
		body, _ := json.Marshal(map[string]any{"customdata": cd})
		e.api("PUT", "projects/"+e.srv.Sim.Project(), string(body), nil)
	}
	now := time.Now().UTC()
	holder := map[string]any{"holder": "h/9/" + run, "op": "apply", "since": now.Format(time.RFC3339),
		"expires": now.Add(time.Hour).Format(time.RFC3339)}
	setRecord(holder)
	reads := func() int { return e.srv.Sim.Stats().Requests["GET /projects/{id}"] }
	before := reads()
	var wg sync.WaitGroup
	var out, errs string
	var code int
	wg.Go(func() { out, errs, code = e.run(append(apply, "--lock-timeout", "30s")...) })
	// The apply read the record for its plan, then found the lease held.
	deadline := time.Now().Add(10 * time.Second)
	for reads() < before+2 {
		if time.Now().After(deadline) {
			t.Fatal("the apply never tried the lease")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// r9 sends its reboots and releases, recording itself finished.
	holder["released_at"] = time.Now().UTC().Format(time.RFC3339)
	holder["runs"] = []lease.Run{{ID: run}}
	setRecord(holder)
	wg.Wait()
	if code != 0 || !strings.Contains(errs, "Another run finished its rebuilds while this run took its lease; planning again.") ||
		!strings.Contains(out, "No changes.") {
		t.Errorf("waiting apply: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
	}
}
