package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// reseal rewrites a saved plan's body with edit and recomputes its
// checksum, as someone editing the file on purpose would.
func reseal(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	body := edit(string(env["plan"]))
	if body == string(env["plan"]) {
		t.Fatal("the edit changed nothing")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(body)); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(compact.Bytes())
	sealed, _ := json.Marshal("sha256:" + hex.EncodeToString(sum[:]))
	env["plan"], env["checksum"] = json.RawMessage(body), sealed
	out, _ := json.Marshal(env)
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestEditedPlanCannotTouchForeignDevices: a saved plan whose delete was
// pointed at another owner's device, checksum recomputed, is refused
// naming that device, and the device is untouched.
func TestEditedPlanCannotTouchForeignDevices(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	foreign, err := e.srv.Sim.Seed(packetsim.SeedDevice{Hostname: "payroll-db", Zone: "ams1", Tags: []string{"team:finance"}})
	if err != nil {
		t.Fatal(err)
	}
	before := e.device(foreign[0])
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "-o", "plain")
	ours := e.status()
	e.write(fmt.Sprintf(e2eFleet, "v1", 0))
	planFile := filepath.Join(e.dir, "shrink.plan")
	e.mustRun(0, "plan", "-f", e.fleet, "--out", planFile)

	victim := ours[0].ID
	reseal(t, planFile, func(body string) string { return strings.ReplaceAll(body, victim, foreign[0]) })
	_, errs, code := e.run("apply", "-f", e.fleet, "--auto-approve", planFile)
	want := fmt.Sprintf(`the plan would delete device %s (slot %s), which is not one of fleet "e2e"'s devices: refusing it`, foreign[0], ours[0].Slot)
	if code != ExitError || !strings.Contains(errs, want) {
		t.Fatalf("edited plan: exit %d, want 1 with %q; stderr:\n%s", code, want, errs)
	}
	if after := e.device(foreign[0]); after != before {
		t.Errorf("the foreign device changed:\nbefore %s\nafter  %s", before, after)
	}
	if n := len(e.status()); n != 2 {
		t.Errorf("%d devices of the fleet after the refused plan, want 2", n)
	}

	// Pointed at a device of the fleet, but in another slot: refused too.
	// The plan file's slot fields and the live device's slot tag are
	// edited together (Load refuses a live device whose tags disagree).
	e.mustRun(0, "plan", "-f", e.fleet, "--out", planFile)
	reseal(t, planFile, func(body string) string {
		body = strings.ReplaceAll(body, `"`+ours[0].Slot+`"`, `"web/ams1/7"`)
		return strings.ReplaceAll(body, `"`+spec.TagSlot+ours[0].Slot+`"`, `"`+spec.TagSlot+`web/ams1/7"`)
	})
	want = fmt.Sprintf("the plan would delete device %s as slot web/ams1/7, but that device is slot %s: refusing it", victim, ours[0].Slot)
	if _, errs, code := e.run("apply", "-f", e.fleet, "--auto-approve", planFile); code != ExitError || !strings.Contains(errs, want) {
		t.Errorf("plan with a moved slot: exit %d; stderr:\n%s", code, errs)
	}
}
