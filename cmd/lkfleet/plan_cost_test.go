package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/pipeline"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// requests is the total number of API requests the simulator answered.
func (e *e2e) requests() int {
	n := 0
	for _, c := range e.srv.Sim.Stats().Requests {
		n += c
	}
	return n
}

// seedFleet puts the fleet file's desired devices straight into the
// simulator, exactly as apply would have made them, so a plan over them
// has nothing to do.
func (e *e2e) seedFleet() int {
	e.t.Helper()
	fleet, err := loadFleet(&Env{Getenv: func(k string) string { return e.vars[k] }}, fleetFlags{File: e.fleet})
	if err != nil {
		e.t.Fatal(err)
	}
	desired, err := spec.Expand(fleet)
	if err != nil {
		e.t.Fatal(err)
	}
	desired, err = pipeline.Render(context.Background(), pipeline.HTTPClient(), images(), desired, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	seeds := make([]packetsim.SeedDevice, len(desired))
	for i, d := range desired {
		seeds[i] = packetsim.SeedDevice{
			Hostname: d.Hostname, Tags: d.Tags(), Plan: d.Machine, Zone: d.Zone,
			AlwaysPXE: d.AlwaysPXE, Userdata: d.APIUserdata(), IPXEScriptURL: d.IPXEScriptURL,
		}
	}
	if _, err := e.srv.Sim.Seed(seeds...); err != nil {
		e.t.Fatal(err)
	}
	return len(desired)
}

const costFleet = `apiVersion: lkfleet/v1
fleet: cost
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: IMAGES/v1
    cmdline: console=ttyS1
groups:
  - name: web
    image: sshd
    count: %d
    zones: [%s]
`

// A small fleet in a crowded project: foreign devices cost nothing but the
// one project listing needed to warn about hostname clashes.
func TestPlanCostWithManyForeignDevices(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	foreign := make([]packetsim.SeedDevice, 1500)
	for i := range foreign {
		foreign[i] = packetsim.SeedDevice{Hostname: fmt.Sprintf("other-%d", i), Tags: []string{"team:other"}}
	}
	if _, err := e.srv.Sim.Seed(foreign...); err != nil {
		t.Fatal(err)
	}
	e.write(fmt.Sprintf(costFleet, 5, "ams1"))
	before := e.requests()
	out := e.mustRun(0, "plan", "-f", e.fleet)
	if !strings.Contains(out, "Plan: 5 to add") {
		t.Fatalf("plan:\n%s", out)
	}
	if n := e.requests() - before; n > 10 {
		t.Errorf("plan of 5 devices among 1,500 foreign ones cost %d API requests, want at most 10 (%v)", n, e.srv.Sim.Stats().Requests)
	}

	// Once the fleet exists, the project listing is not needed at all.
	e.seedFleet()
	before = e.requests()
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")
	if n := e.requests() - before; n > 5 {
		t.Errorf("no-change plan cost %d API requests, want at most 5 (3 catalogue + 1 listing + 1 lease read)", n)
	}
}

func TestPlanCostOverTenThousandDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds 10,000 devices")
	}
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(costFleet, 2500, "ams1, ewr1, sjc1, nrt1"))
	if n := e.seedFleet(); n != 10000 {
		t.Fatalf("seeded %d devices", n)
	}
	before := e.requests()
	out := e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")
	if !strings.Contains(out, "No changes.") {
		t.Fatalf("plan over a matching fleet:\n%s", out)
	}
	if n := e.requests() - before; n > 14 { // 3 catalogue + 10 pages + 1 lease read
		t.Errorf("plan over 10,000 devices cost %d API requests, want at most 14 (%v)", n, e.srv.Sim.Stats().Requests)
	}
}

// Planning lists the fleet without the devices' addresses (ListForPlan
// through planBackend): they are about 40 % of a listed device. A fleet
// that manages network types lists them: the type is derived in part from
// whether a device has management addresses.
func TestPlanListsWithoutAddresses(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	for _, tc := range []struct {
		name, extra string
		excluded    bool
	}{
		{"no network types", "", true},
		{"network types", "    network_type: layer3\n", false},
	} {
		e.write(fmt.Sprintf(costFleet, 3, "ams1") + tc.extra)
		_, errs, code := e.run("plan", "-f", e.fleet, "--debug")
		if code != 0 {
			t.Fatalf("%s: plan: exit %d\n%s", tc.name, code, errs)
		}
		listings := 0
		for line := range strings.SplitSeq(errs, "\n") {
			if !strings.HasPrefix(line, "> GET ") || !strings.Contains(line, "/devices?") || !strings.Contains(line, "tag=") {
				continue
			}
			listings++
			if got := strings.Contains(line, "exclude=ip_addresses"); got != tc.excluded {
				t.Errorf("%s: fleet listing excludes addresses: %v, want %v: %s", tc.name, got, tc.excluded, line)
			}
		}
		if listings != 1 {
			t.Errorf("%s: plan sent %d fleet listings, want 1", tc.name, listings)
		}
	}
}
