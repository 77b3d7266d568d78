package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

const reservedFleet = `apiVersion: lkfleet/v1
fleet: resv
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: IMAGES/%s
groups:
  - name: web
    image: sshd
    count: %d
    zone: ams1
    machine: c3.small.x86
    hardware_reservation: next-available
rollout:
  rebuild: recreate
  max_unavailable: 1
`

// reservationsOf maps the fleet's live device ids to the reservation each
// was created on.
func (e *e2e) reservationsOf() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, d := range e.status() {
		if !d.Foreign {
			out[d.ID] = e.srv.Sim.ReservationOf(d.ID)
		}
	}
	return out
}

// A reserved group applies onto exactly its reservations, a recreate
// rollout over it converges without asking for a reservation that is
// still held, a failed reserved device is retried on its reservation,
// and a group that needs more reservations than exist fails the plan
// before anything is created.
func TestEndToEndReservations(t *testing.T) {
	e := newE2E(t, packetsim.Config{DeprovisionTime: 30 * time.Millisecond,
		Reservations: []packetsim.ReservationSeed{{Plan: "c3.small.x86", Zone: "ams1", Count: 2}}})
	var resv []string
	for _, r := range e.srv.Sim.Reservations() {
		resv = append(resv, r.ID)
	}
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "10ms", "-o", "plain", "--wait", "booted"}

	e.write(fmt.Sprintf(reservedFleet, "v1", 3))
	_, errs, code := e.run("plan", "-f", e.fleet)
	if code == 0 || !strings.Contains(errs, `group "web" needs 1 more provisionable hardware reservation(s) than the project has (slots web/ams1/3)`) {
		t.Fatalf("plan for 3 devices on 2 reservations: exit %d\n%s", code, errs)
	}
	if _, errs, code := e.run(apply...); code == 0 || !strings.Contains(errs, "needs 1 more provisionable") || e.srv.Sim.Stats().Creates != 0 {
		t.Fatalf("apply for 3 devices on 2 reservations: exit %d, %d creates\n%s", code, e.srv.Sim.Stats().Creates, errs)
	}

	e.write(fmt.Sprintf(reservedFleet, "v1", 2))
	out := e.mustRun(0, "plan", "-f", e.fleet, "-o", "json")
	var jp struct {
		Changes []struct {
			Slot        string `json:"slot"`
			Reservation string `json:"reservation"`
		} `json:"changes"`
		Cost struct {
			After float64 `json:"hourly_after"`
			Delta float64 `json:"hourly_delta"`
		} `json:"cost"`
	}
	if err := json.Unmarshal([]byte(out), &jp); err != nil {
		t.Fatal(err)
	}
	if len(jp.Changes) != 2 || jp.Changes[0].Reservation != resv[0] || jp.Changes[1].Reservation != resv[1] || jp.Cost.After != 0 {
		t.Fatalf("plan -o json: %s", out)
	}
	e.srv.Sim.FailNextCreates(1) // the first device fails and is retried on its reservation
	out = e.mustRun(0, append(apply, "--failed-retries", "1")...)
	if n := e.srv.Sim.Stats().Faults[packetsim.FaultFailedProvision]; n != 1 || !strings.Contains(out, "deleting the failed device and creating it again") {
		t.Fatalf("%d failed provisions, want 1 retried:\n%s", n, out)
	}
	first := e.reservationsOf()
	if got := slices.Sorted(maps.Values(first)); !slices.Equal(got, resv) {
		t.Fatalf("devices are on reservations %v, want exactly %v", got, resv)
	}

	// A recreate rollout: each new device takes its old one's reservation
	// once the old one is gone.
	e.write(fmt.Sprintf(reservedFleet, "v2", 2))
	plan := e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	if !strings.Contains(plan, "once device") {
		t.Errorf("plan does not say the reservation is taken once the old device is gone:\n%s", plan)
	}
	e.mustRun(0, apply...)
	second := e.reservationsOf()
	if got := slices.Sorted(maps.Values(second)); !slices.Equal(got, resv) {
		t.Fatalf("after the rollout devices are on %v, want %v", got, resv)
	}
	for id := range second {
		if _, old := first[id]; old {
			t.Errorf("device %s survived a recreate rollout", id)
		}
	}
	if n := e.srv.Sim.Stats().Status["422"]; n != 0 {
		t.Errorf("the simulator refused %d requests (a held reservation asked for?)", n)
	}
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")
	for _, r := range e.srv.Sim.Reservations() {
		if r.Device == "" {
			t.Errorf("reservation %s stranded without a device", r.ID)
		}
	}
}

const spotFleet = `apiVersion: lkfleet/v1
fleet: spot
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: IMAGES/v1
groups:
  - name: cheap
    image: sshd
    count: 2
    zone: ams1
    machine: c3.small.x86
    spot: {max_price: 0.5}
  - name: steady
    image: sshd
    zone: ams1
    machine: c3.small.x86
`

// A spot group shows the market price and the cost line matches the
// simulator's prices; outbid mid-life, its devices show as terminating
// and the next apply replaces them.
func TestEndToEndSpot(t *testing.T) {
	e := newE2E(t, packetsim.Config{Spot: packetsim.SpotConfig{Notice: 400 * time.Millisecond}})
	if err := e.srv.Sim.SetSpotPrice("am", "c3.small.x86", 0.2); err != nil {
		t.Fatal(err)
	}
	e.write(spotFleet)
	plan := e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	// 2 × 0.20 spot + 0.75 on demand.
	if !strings.Contains(plan, "Plan: 3 to add, 0 to rebuild, 0 to change, 0 to destroy. (≈ $1.15/hour after apply, +$1.15/hour)") ||
		!strings.Contains(plan, `spot       = "max $0.50/hour (now $0.20 in am)"`) ||
		!strings.Contains(plan, `Spot: group "cheap" bids $0.50/hour; the current price is $0.20/hour.`) {
		t.Fatalf("spot plan:\n%s", plan)
	}
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "10ms", "-o", "plain"}
	e.mustRun(0, apply...)
	before := ids(e.status())

	if err := e.srv.Sim.SetSpotPrice("am", "c3.small.x86", 0.6); err != nil { // outbid
		t.Fatal(err)
	}
	plan = e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	if strings.Count(plan, "spot instance outbid: the service terminates it at") != 2 ||
		!strings.Contains(plan, "spot.max_price $0.50 is below the current spot price $0.60") {
		t.Fatalf("plan after the outbid:\n%s", plan)
	}
	st := e.mustRun(0, "status", "-f", e.fleet)
	if strings.Count(st, "(terminating at ") != 2 {
		t.Errorf("status does not show the two outbid devices as terminating:\n%s", st)
	}
	if err := e.srv.Sim.SetSpotPrice("am", "c3.small.x86", 0.3); err != nil {
		t.Fatal(err)
	}
	e.mustRun(0, apply...)
	after := ids(e.status())
	for _, s := range []string{"cheap/ams1/1", "cheap/ams1/2"} {
		if after[s] == "" || after[s] == before[s] {
			t.Errorf("slot %s: %q -> %q, want a new device", s, before[s], after[s])
		}
	}
	if after["steady/ams1/1"] != before["steady/ams1/1"] {
		t.Errorf("the on-demand device was replaced too")
	}
	out := e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")
	if !strings.Contains(out, "No changes.") {
		t.Errorf("plan after the replacement:\n%s", out)
	}
}

const chaosReservedFleet = `apiVersion: lkfleet/v1
fleet: resv
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: IMAGES/%s
groups:
  - name: ci
    image: sshd
    count: 3
    zones: [ams1, ewr1]
    machine: c3.small.x86
    hardware_reservation: next-available
rollout:
  rebuild: recreate
  max_unavailable: 2
`

// Ambiguous creates and failed provisions over a reserved fleet
// and a recreate rollout: applies converge with no duplicate and no
// reservation left without a device of the fleet.
func TestReservationsUnderFaults(t *testing.T) {
	e := newE2E(t, packetsim.Config{Seed: 11, AmbiguousCreateRate: 0.15, FailProvisionRate: 0.1,
		Reservations: []packetsim.ReservationSeed{{Plan: "c3.small.x86", Zone: "ams1", Count: 3}, {Plan: "c3.small.x86", Zone: "ewr1", Count: 3}}})
	converge := func(release string) {
		t.Helper()
		e.write(fmt.Sprintf(chaosReservedFleet, release))
		for i := range 8 {
			if _, _, code := e.run("plan", "-f", e.fleet, "--detailed-exitcode"); code == 0 {
				return
			}
			e.run("apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "10ms", "-o", "plain", "--failed-retries", "2")
			if d := e.srv.Sim.Stats().Duplicates; d != 0 {
				t.Fatalf("apply %d of %s: %d duplicate devices", i+1, release, d)
			}
		}
		t.Fatalf("release %s did not converge in 8 applies", release)
	}
	converge("v1")
	converge("v2")
	live := e.reservationsOf()
	if len(live) != 6 {
		t.Fatalf("%d fleet devices, want 6", len(live))
	}
	for _, r := range e.srv.Sim.Reservations() {
		if _, ok := live[r.Device]; !ok {
			t.Errorf("reservation %s is held by %q, not by a device of the fleet", r.ID, r.Device)
		}
	}
	if st := e.srv.Sim.Stats(); st.Faults[packetsim.FaultAmbiguousCreate] == 0 || st.Faults[packetsim.FaultFailedProvision] == 0 {
		t.Errorf("faults %v: the run proved nothing", st.Faults)
	}
}
