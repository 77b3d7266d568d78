package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// slotOrderFleet has two groups whose names sort differently by bytes
// (web10 < web2) and naturally (web2 < web10): docs/fleet-file.md promises
// natural order for plan and status alike.
const slotOrderFleet = `apiVersion: lkfleet/v1
fleet: order
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: IMAGES/v1
groups:
  - name: web10
    image: sshd
    count: 1
    zones: [ams1]
  - name: web2
    image: sshd
    count: 1
    zones: [ams1]
`

// TestPlanAndStatusListSlotsInOneNaturalOrder checks the slot order the
// user sees in plan text, plan JSON and status: all three come from the
// one spec.Slot comparison. Before it existed plan sorted bytewise and
// listed web10 before web2 while status listed web2 first.
func TestPlanAndStatusListSlotsInOneNaturalOrder(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(slotOrderFleet)
	want := []string{"web2/ams1/1", "web10/ams1/1"}

	text := e.mustRun(0, "plan", "-f", e.fleet)
	i2, i10 := strings.Index(text, "web2/ams1/1"), strings.Index(text, "web10/ams1/1")
	if i2 < 0 || i10 < 0 || i2 > i10 {
		t.Errorf("plan text lists web10/ams1/1 (at %d) before web2/ams1/1 (at %d):\n%s", i10, i2, text)
	}

	var plan struct {
		Changes []struct {
			Slot string `json:"slot"`
		} `json:"changes"`
	}
	out := e.mustRun(0, "plan", "-f", e.fleet, "-o", "json")
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("plan -o json: %v\n%s", err, out)
	}
	var got []string
	for _, c := range plan.Changes {
		got = append(got, c.Slot)
	}
	if !slices.Equal(got, want) {
		t.Errorf("plan JSON slots = %q, want %q", got, want)
	}

	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain", "--wait", "none")
	got = nil
	for _, d := range e.status() {
		got = append(got, d.Slot)
	}
	if !slices.Equal(got, want) {
		t.Errorf("status slots = %q, want %q", got, want)
	}
}
