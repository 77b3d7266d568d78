package main

import (
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// A group on a machine type that cannot change its network fails the plan
// before anything is created, with the group, its slots and the reason.
func TestPlanRefusesNetworkTypeOfFixedPlan(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(`apiVersion: lkfleet/v1
fleet: e2e
project: ${PACKET_PROJECT_ID}
images:
  sshd: {base_url: IMAGES/v1}
groups:
  - name: lab
    image: sshd
    machine: baremetal_0
    network_type: hybrid
    vlans: [1001]
`)
	_, errs, code := e.run("plan", "-f", e.fleet)
	want := `check network_type of group "lab" (slot lab/ams1/1): machine type "baremetal_0" always has network type layer3 and cannot be converted to hybrid`
	if code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("plan: exit %d, stderr:\n%s\nwant %s", code, errs, want)
	}
	if _, errs, code := e.run("apply", "-f", e.fleet, "--auto-approve"); code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("apply: exit %d, stderr:\n%s", code, errs)
	}
	if n := e.srv.Sim.Stats().Creates; n != 0 {
		t.Errorf("%d devices created", n)
	}
}
