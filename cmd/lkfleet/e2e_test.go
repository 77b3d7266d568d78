package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// e2e is one simulator plus the environment and fleet file the CLI uses
// against it.
type e2e struct {
	t      *testing.T
	srv    *packetsim.Server
	vars   map[string]string
	dir    string
	fleet  string // path of the fleet file
	images string // URL of the images directory
}

const e2eToken = "e2e-secret-token-0123456789abcdef"

// newE2E starts an in-process simulator with fast timings and artifacts
// for images "v1" and "v2" of "sshd".
func newE2E(t *testing.T, cfg packetsim.Config) *e2e {
	t.Helper()
	dir := t.TempDir()
	imgs := filepath.Join(dir, "images")
	for _, rel := range []string{"v1", "v2"} {
		d := filepath.Join(imgs, rel)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string]string{
			"sshd-kernel":     "kernel " + rel,
			"sshd-initrd.img": "initrd " + rel,
			"sshd-cmdline":    "console=ttyS1 release=" + rel,
		} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cfg.Token = e2eToken
	cfg.ImagesDir = imgs
	cfg.Quiet = true
	if cfg.ProvisionTime == 0 {
		cfg.ProvisionTime = 20 * time.Millisecond
	}
	if cfg.DeprovisionTime == 0 {
		cfg.DeprovisionTime = 10 * time.Millisecond
	}
	srv, err := packetsim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &e2e{
		t:   t,
		srv: srv,
		vars: map[string]string{
			"PACKET_API_URL":    srv.APIURL,
			"PACKET_AUTH_TOKEN": e2eToken,
			"PACKET_PROJECT_ID": srv.Sim.Project(),
			// The simulator's list lag, as an operator would state it.
			"LKFLEET_LIST_LAG": cfg.ListLag.String(),
			// Writes to the simulator take a millisecond; 300 ms leaves room
			// for a loaded CI machine (lock.go aborts above half of it).
			"LKFLEET_LOCK_SETTLE": "300ms",
		},
		dir:    dir,
		fleet:  filepath.Join(dir, "fleet.yml"),
		images: srv.URL + "/images",
	}
}

// write writes the fleet file; %s in body is replaced by the images URL.
func (e *e2e) write(body string) {
	e.t.Helper()
	if err := os.WriteFile(e.fleet, []byte(strings.ReplaceAll(body, "IMAGES", e.images)), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// run runs lkfleet with the fleet file and fast polling, and checks that
// the token never appears in any output.
func (e *e2e) run(args ...string) (string, string, int) {
	e.t.Helper()
	start := time.Now()
	out, errs, code := runCLI(e.t, e.vars, args...)
	e.t.Logf("lkfleet %s: exit %d in %v", strings.Join(args, " "), code, time.Since(start).Round(time.Millisecond))
	if strings.Contains(out+errs, e2eToken) {
		e.t.Fatalf("lkfleet %s printed the API token", strings.Join(args, " "))
	}
	return out, errs, code
}

func (e *e2e) mustRun(want int, args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != want {
		e.t.Fatalf("lkfleet %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errs)
	}
	return out
}

// device returns the API's JSON for device id, as any client sees it.
func (e *e2e) device(id string) string {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.srv.APIURL+"devices/"+id, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", e2eToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET device %s: %d %v", id, resp.StatusCode, err)
	}
	return string(body)
}

type statusDevice struct {
	Slot     string `json:"slot"`
	Hostname string `json:"hostname"`
	ID       string `json:"id"`
	State    string `json:"state"`
	Booted   string `json:"booted"`
	Image    string `json:"image"`
	Current  bool   `json:"current"`
	Foreign  bool   `json:"foreign"`
}

func (e *e2e) status() []statusDevice {
	e.t.Helper()
	out := e.mustRun(0, "status", "-f", e.fleet, "-o", "json")
	var devs []statusDevice
	if err := json.Unmarshal([]byte(out), &devs); err != nil {
		e.t.Fatalf("status -o json: %v\n%s", err, out)
	}
	return devs
}

func ids(devs []statusDevice) map[string]string {
	m := map[string]string{}
	for _, d := range devs {
		if !d.Foreign {
			m[d.Slot] = d.ID
		}
	}
	return m
}

const e2eFleet = `apiVersion: lkfleet/v1
fleet: e2e
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: IMAGES/%s
groups:
  - name: web
    image: sshd
    count: %d
    zones: [ams1, ewr1]
rollout:
  waves: [[ams1], [ewr1]]
`

func TestEndToEndLifecycle(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	// A device someone else owns, with a hostname the fleet wants, and one
	// unrelated device: neither may ever be touched.
	foreign, err := e.srv.Sim.Seed(
		packetsim.SeedDevice{Hostname: "web-ams1-1", Zone: "ams1", Tags: []string{"team:other"}},
		packetsim.SeedDevice{Hostname: "database", Zone: "ewr1"},
	)
	if err != nil {
		t.Fatal(err)
	}
	var foreignBefore []string
	for _, id := range foreign {
		foreignBefore = append(foreignBefore, e.device(id))
	}
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain"}

	e.write(fmt.Sprintf(e2eFleet, "v1", 2))
	out := e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	for _, want := range []string{"Plan: 4 to add, 0 to rebuild, 0 to change, 0 to destroy.", "web-ams1-1", "Wave 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, `Warning: hostname "web-ams1-1" (slot web/ams1/1) is also used by device `+foreign[0]) {
		t.Errorf("plan does not warn about the foreign hostname clash:\n%s", out)
	}

	out = e.mustRun(0, apply...)
	if !strings.Contains(out, "Apply complete: 4 added, 0 rebuilt, 0 changed, 0 destroyed") {
		t.Fatalf("apply summary:\n%s", out)
	}
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")
	first := e.status()
	before := ids(first)
	if len(before) != 4 {
		t.Fatalf("status after apply: %+v", first)
	}
	for _, d := range first {
		if !d.Foreign && (d.State != "active" || d.Booted != "succeeded" || !d.Current) {
			t.Errorf("device %s: state %s booted %q current %v", d.Slot, d.State, d.Booted, d.Current)
		}
	}
	boots := len(e.srv.Sim.Boots())

	// A new image release: every device is rebuilt in place (reboot), keeping its id.
	e.write(fmt.Sprintf(e2eFleet, "v2", 2))
	out = e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	if !strings.Contains(out, "Plan: 0 to add, 4 to rebuild, 0 to change, 0 to destroy.") {
		t.Fatalf("plan after image change:\n%s", out)
	}
	out = e.mustRun(0, append(apply, "--wait", "booted")...)
	if !strings.Contains(out, "4 rebuilt") {
		t.Fatalf("rebuild apply:\n%s", out)
	}
	if after := ids(e.status()); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("rebuild changed device ids: before %v after %v", before, after)
	}
	newBoots := e.srv.Sim.Boots()[boots:]
	if len(newBoots) != 4 {
		t.Fatalf("rebuild made %d boots, want 4", len(newBoots))
	}
	for _, b := range newBoots {
		if !b.OK || !strings.Contains(b.KernelURL, "/v2/") || !strings.Contains(b.Args, "release=v2") {
			t.Errorf("boot after rebuild: %+v", b)
		}
	}
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")

	// Scale down to one per zone: the slots with index 2 go.
	e.write(fmt.Sprintf(e2eFleet, "v2", 1))
	out = e.mustRun(0, apply...)
	if !strings.Contains(out, "0 added, 0 rebuilt, 0 changed, 2 destroyed") {
		t.Fatalf("scale down:\n%s", out)
	}
	var slots []string
	for slot := range ids(e.status()) {
		slots = append(slots, slot)
	}
	sort.Strings(slots)
	if fmt.Sprint(slots) != "[web/ams1/1 web/ewr1/1]" {
		t.Errorf("slots after scale down: %v", slots)
	}

	out = e.mustRun(0, "destroy", "-f", e.fleet, "--auto-approve", "-o", "plain")
	if !strings.Contains(out, "Destroy complete: 2 destroyed") {
		t.Fatalf("destroy:\n%s", out)
	}
	for _, d := range e.status() {
		if !d.Foreign {
			t.Errorf("device left after destroy: %+v", d)
		}
	}
	// The foreign devices are exactly as they were.
	for i, id := range foreign {
		if after := e.device(id); after != foreignBefore[i] {
			t.Errorf("foreign device %s changed:\nbefore %s\nafter  %s", id, foreignBefore[i], after)
		}
	}
	if st := e.srv.Sim.Stats(); st.Duplicates != 0 {
		t.Errorf("simulator saw %d duplicate slots", st.Duplicates)
	}
}

func TestSavedPlanIsAppliedOrRefusedWhenStale(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	planFile := filepath.Join(e.dir, "lab.plan")
	e.mustRun(0, "plan", "-f", e.fleet, "--out", planFile)
	data, err := os.ReadFile(planFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), e2eToken) {
		t.Fatal("the saved plan contains the token")
	}

	// The fleet file changes after planning: the plan is refused.
	e.write(fmt.Sprintf(e2eFleet, "v1", 2))
	_, errs, code := e.run("apply", "-f", e.fleet, "--auto-approve", planFile)
	if code != 1 || !strings.Contains(errs, "stale") {
		t.Fatalf("stale plan: exit %d, stderr %q", code, errs)
	}
	if n := e.srv.Sim.Stats().Creates; n != 0 {
		t.Fatalf("a refused plan created %d devices", n)
	}

	// Back to the planned file: exactly that plan is applied.
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	out := e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain", planFile)
	if !strings.Contains(out, "2 added") {
		t.Fatalf("apply of saved plan:\n%s", out)
	}
	// The live devices changed: applying the same plan again is refused.
	_, errs, code = e.run("apply", "-f", e.fleet, "--auto-approve", planFile)
	if code != 1 || !strings.Contains(errs, "stale") {
		t.Fatalf("second apply of the plan: exit %d, stderr %q", code, errs)
	}
}

func TestApplyRefusesWithoutTerminalOrApproval(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	_, errs, code := e.run("apply", "-f", e.fleet)
	if code != 1 || !strings.Contains(errs, "--auto-approve") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if n := e.srv.Sim.Stats().Creates; n != 0 {
		t.Fatalf("an unapproved apply created %d devices", n)
	}
}

func TestAPIErrorsAreOneClearLine(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.vars["PACKET_AUTH_TOKEN"] = "wrong-token"
	_, errs, code := e.run("plan", "-f", e.fleet)
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "401") {
		t.Fatalf("wrong token: exit %d, stderr %q", code, errs)
	}
	e.vars["PACKET_AUTH_TOKEN"] = e2eToken
	e.vars["PACKET_PROJECT_ID"] = "11111111-2222-4333-8444-555555555555"
	_, errs, code = e.run("plan", "-f", e.fleet)
	if code != 1 || strings.Count(errs, "\n") != 1 || !regexp.MustCompile(`project .* not found`).MatchString(errs) {
		t.Fatalf("unknown project: exit %d, stderr %q", code, errs)
	}
	delete(e.vars, "PACKET_AUTH_TOKEN")
	_, errs, code = e.run("plan", "-f", e.fleet)
	if code != 1 || !strings.Contains(errs, "PACKET_AUTH_TOKEN") {
		t.Fatalf("no token: exit %d, stderr %q", code, errs)
	}
}

func TestStatusFlagsForeignHostnameClash(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	ids, err := e.srv.Sim.Seed(packetsim.SeedDevice{Hostname: "web-ewr1-1", Zone: "ewr1"})
	if err != nil {
		t.Fatal(err)
	}
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain")
	out := e.mustRun(0, "status", "-f", e.fleet)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[0], "SLOT") || !strings.HasPrefix(lines[1], "web/ams1/1") || !strings.HasPrefix(lines[2], "web/ewr1/1") {
		t.Fatalf("status table:\n%s", out)
	}
	want := "! web-ewr1-1 (" + ids[0] + ") is not owned by fleet e2e; hostname clashes with slot web/ewr1/1"
	if lines[5] != want {
		t.Errorf("status note = %q, want %q", lines[5], want)
	}
}

func TestPreflightNamesMissingArtifacts(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v3", 1)) // release v3 was never uploaded
	_, errs, code := e.run("plan", "-f", e.fleet)
	if code != 1 || !strings.Contains(errs, e.images+"/v3/sshd-cmdline") {
		t.Fatalf("plan with a missing release: exit %d, stderr %q", code, errs)
	}
	// The cmdline given in the file, only the kernel and initrd are missing.
	e.write(strings.Replace(fmt.Sprintf(e2eFleet, "v3", 1), "base_url: IMAGES/v3", "base_url: IMAGES/v3\n    cmdline: console=ttyS1", 1))
	_, errs, code = e.run("plan", "-f", e.fleet)
	for _, want := range []string{e.images + "/v3/sshd-kernel", e.images + "/v3/sshd-initrd.img", "404"} {
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("plan with missing artifacts: exit %d, stderr %q lacks %q", code, errs, want)
		}
	}
	out, errs, code := e.run("plan", "-f", e.fleet, "--skip-preflight")
	if code != 0 || !strings.Contains(out, "Plan: 2 to add") ||
		!strings.Contains(errs, "Preflight skipped (--skip-preflight): 2 kernel and initrd URLs and 0 script URLs were not checked.") {
		t.Fatalf("--skip-preflight: exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
}
