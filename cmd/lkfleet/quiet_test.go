package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// fenceMsg is the executor's line when a run waits out the list lag before
// its first create (executor/safety.go).
const fenceMsg = "waiting out the list lag"

// TestRerunRightAfterReleaseStillWaits: a run that created within the
// lag and released its lease cleanly (--wait none returns right after its
// creates) is followed at once by another; the listings still hide the
// first run's devices, so the second one waits out the lag and adopts
// them instead of creating duplicates.
func TestRerunRightAfterReleaseStillWaits(t *testing.T) {
	e := newE2E(t, packetsim.Config{ListLag: time.Second})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain"}
	e.mustRun(0, append(apply, "--wait", "none")...)
	if raw := string(e.customdata()["lkfleet:lease:e2e"]); !strings.Contains(raw, `"released_at":"`) {
		t.Fatalf("no released record after a clean run: %s", raw)
	}
	out := e.mustRun(0, apply...)
	if !strings.Contains(out, fenceMsg) || !strings.Contains(out, "an earlier run created this slot's device; using it") {
		t.Errorf("re-run right after a release did not wait and adopt:\n%s", out)
	}
	if st := e.srv.Sim.Stats(); st.Duplicates != 0 || st.Creates != 2 {
		t.Errorf("%d duplicates, %d creates for 2 slots", st.Duplicates, st.Creates)
	}
}

// TestQuietSinceFromTheLease: what the fleet's lease says about the last
// run decides whether an apply that creates waits one list lag (500 ms
// here; the simulator itself hides nothing, so a wait is visible only as
// the executor's line, never as a wrong fleet).
func TestQuietSinceFromTheLease(t *testing.T) {
	now := time.Now().UTC()
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	for _, tc := range []struct {
		name   string
		record string // the fleet's customdata record before the apply; "" none
		lock   string
		waits  bool
	}{
		{"released long ago", `{"holder":"h/1/a","host":"h","pid":1,"op":"apply","since":"` + at(-2*time.Hour) + `","expires":"` + at(-time.Hour) + `","released_at":"` + at(-time.Hour) + `"}`, "api", false},
		// Expired 10 s ago: the holder stopped by expires - 20 s + 1 s
		// (+5 s skew), 24 s ago, longer ago than the lag.
		{"expired holder", `{"holder":"h/2/b","host":"h","pid":2,"op":"apply","since":"` + at(-70*time.Second) + `","expires":"` + at(-10*time.Second) + `"}`, "api", false},
		{"never locked", "", "api", true},
		{"broken by unlock", `{"holder":"","since":"0001-01-01T00:00:00Z","expires":"0001-01-01T00:00:00Z","broken_at":"` + at(-time.Hour) + `"}`, "api", true},
		{"no lease", `{"holder":"h/1/a","since":"` + at(-2*time.Hour) + `","expires":"` + at(-time.Hour) + `","released_at":"` + at(-time.Hour) + `"}`, "none", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newE2E(t, packetsim.Config{})
			e.vars["LKFLEET_LIST_LAG"] = "500ms"
			if tc.record != "" {
				e.api("PUT", "projects/"+e.srv.Sim.Project(), `{"customdata":{"team":{"owner":"ops"},"lkfleet:lease:e2e":`+tc.record+`}}`, nil)
			}
			e.write(fmt.Sprintf(e2eFleet, "v1", 1))
			out := e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain", "--lock", tc.lock)
			if got := strings.Contains(out, fenceMsg); got != tc.waits {
				t.Errorf("waited out the list lag: %v, want %v\n%s", got, tc.waits, out)
			}
			if !strings.Contains(out, "Apply complete: 2 added") {
				t.Errorf("apply output:\n%s", out)
			}
			if st := e.srv.Sim.Stats(); st.Duplicates != 0 || st.Creates != 2 {
				t.Errorf("%d duplicates, %d creates for 2 slots", st.Duplicates, st.Creates)
			}
			if tc.record != "" && string(e.customdata()["team"]) != `{"owner":"ops"}` {
				t.Errorf("foreign customdata changed: %s", e.customdata()["team"])
			}
		})
	}
}
