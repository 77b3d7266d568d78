package main

// End-to-end tests of rollouts (waves, budgets, canaries, halts, readiness,
// nightly rebuilds) on the in-process simulator. The order of events is
// observed from the simulator's side: every API request passes through a
// recording handler, and the simulator records every boot. Nothing here
// trusts lkfleet's own account of what it did.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// apiCall is one API request as the simulator saw it.
type apiCall struct {
	Method string
	Path   string // below /metal/v1
	Start  time.Time
	End    time.Time
	Status int
	// DeviceID is the device a /devices/{id}... request addresses, or the
	// device a create made.
	DeviceID string
	// Action is the type of a device action (reboot, reinstall, ...).
	Action string
	// Slot is the lkfleet:slot tag a create sent.
	Slot string
}

// recorder wraps the simulator and notes every API request, so tests can
// check the order of calls against the simulator's boots.
type recorder struct {
	h     http.Handler
	mu    sync.Mutex
	calls []apiCall
}

// bodyWriter keeps the status and body of a response on their way out.
type bodyWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *bodyWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *bodyWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := apiCall{Method: r.Method, Path: strings.TrimPrefix(r.URL.Path, "/metal/v1"), Start: time.Now()}
	reqBody, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	bw := &bodyWriter{ResponseWriter: w}
	rec.h.ServeHTTP(bw, r)
	c.End, c.Status = time.Now(), bw.status

	parts := strings.Split(strings.Trim(c.Path, "/"), "/")
	switch {
	case len(parts) >= 2 && parts[0] == "devices":
		c.DeviceID = parts[1]
		if len(parts) == 3 && parts[2] == "actions" {
			var in struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal(reqBody, &in)
			c.Action = in.Type
		}
	case len(parts) == 3 && parts[0] == "projects" && parts[2] == "devices" && r.Method == http.MethodPost:
		var in struct {
			Tags []string `json:"tags"`
		}
		_ = json.Unmarshal(reqBody, &in)
		for _, t := range in.Tags {
			if s, ok := strings.CutPrefix(t, spec.TagPrefix+"slot="); ok {
				c.Slot = s
			}
		}
		var out struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(bw.body.Bytes(), &out)
		c.DeviceID = out.ID
	}
	rec.mu.Lock()
	rec.calls = append(rec.calls, c)
	rec.mu.Unlock()
}

// mark returns a position in the log; since(mark) returns what came after.
func (rec *recorder) mark() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.calls)
}

func (rec *recorder) since(mark int) []apiCall {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.calls[mark:])
}

// rollout is an e2e environment whose API requests are recorded.
type rollout struct {
	*e2e
	rec *recorder
}

// rolloutProvision is the simulator's provision time in these tests: a
// reboot boots after a fifth of it, a reinstall after all of it.
const rolloutProvision = 100 * time.Millisecond

func newRollout(t *testing.T) *rollout {
	t.Helper()
	e := newE2E(t, packetsim.Config{ProvisionTime: rolloutProvision, DeprovisionTime: 20 * time.Millisecond})
	rec := &recorder{h: e.srv.Sim}
	ts := httptest.NewServer(rec)
	t.Cleanup(ts.Close)
	e.vars["PACKET_API_URL"] = ts.URL + "/metal/v1/"
	return &rollout{e2e: e, rec: rec}
}

// image writes artifacts for image directory rel, leaving out the files
// named in missing.
func (r *rollout) image(rel string, missing ...string) {
	r.t.Helper()
	d := filepath.Join(r.dir, "images", rel)
	if err := os.MkdirAll(d, 0o755); err != nil {
		r.t.Fatal(err)
	}
	for name, body := range map[string]string{
		"sshd-kernel":     "kernel " + rel,
		"sshd-initrd.img": "initrd " + rel,
		"sshd-cmdline":    "console=ttyS1 release=" + rel,
	} {
		if slices.Contains(missing, name) {
			continue
		}
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

// apply runs lkfleet apply with fast polling and plain output.
func (r *rollout) apply(want int, extra ...string) string {
	r.t.Helper()
	args := append([]string{"apply", "-f", r.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain"}, extra...)
	return r.mustRun(want, args...)
}

// fleetYAML is a fleet of one group "web" of count devices per zone, in
// the given waves, with rollout settings appended.
func fleetYAML(release string, count int, waves [][]string, rolloutExtra string) string {
	var zones []string
	var ws []string
	for _, w := range waves {
		zones = append(zones, w...)
		ws = append(ws, "["+strings.Join(w, ", ")+"]")
	}
	return fmt.Sprintf(`apiVersion: lkfleet/v1
fleet: roll
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: IMAGES/%s
groups:
  - name: web
    image: sshd
    count: %d
    zones: [%s]
rollout:
  waves: [%s]
%s`, release, count, strings.Join(zones, ", "), strings.Join(ws, ", "), rolloutExtra)
}

// zoneOf returns the zone of a slot "group/zone/index".
func zoneOf(t *testing.T, slot string) string {
	t.Helper()
	s, ok := planner.ParseSlot(slot)
	if !ok {
		t.Fatalf("bad slot %q", slot)
	}
	return s.Zone
}

// bootAfter returns the first boot of device id that began after t.
func bootAfter(boots []packetsim.Boot, id string, t time.Time) (packetsim.Boot, bool) {
	for _, b := range boots {
		if b.DeviceID == id && b.Time.After(t) {
			return b, true
		}
	}
	return packetsim.Boot{}, false
}

// outage is the time a device was out of service: from the request that
// took it down until it booted again.
type outage struct {
	id, slot   string
	from, till time.Time
}

// outages pairs every reboot/reinstall action in calls with the boot it
// caused, checking that the boot succeeded on release.
func (r *rollout) outages(calls []apiCall, slotOf map[string]string, release string) []outage {
	r.t.Helper()
	boots := r.srv.Sim.Boots()
	var out []outage
	for _, c := range calls {
		if c.Action != "reboot" && c.Action != "reinstall" {
			continue
		}
		b, ok := bootAfter(boots, c.DeviceID, c.Start)
		if !ok {
			r.t.Fatalf("%s of %s (%s) was never followed by a boot", c.Action, c.DeviceID, slotOf[c.DeviceID])
		}
		if !b.OK || !strings.Contains(b.KernelURL, "/"+release+"/") {
			r.t.Errorf("boot after %s of %s: %+v", c.Action, slotOf[c.DeviceID], b)
		}
		out = append(out, outage{id: c.DeviceID, slot: slotOf[c.DeviceID], from: c.Start, till: b.Time})
	}
	return out
}

// peak returns the most outages that overlap at any instant.
func peak(os []outage) int {
	type edge struct {
		at time.Time
		d  int
	}
	var edges []edge
	for _, o := range os {
		edges = append(edges, edge{o.from, +1}, edge{o.till, -1})
	}
	// At equal times an end comes first: the budget unit was returned.
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].d < edges[j].d
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.d
		most = max(most, n)
	}
	return most
}

// slotsByID maps the fleet's device ids to their slots.
func slotsByID(devs []statusDevice) map[string]string {
	m := map[string]string{}
	for _, d := range devs {
		if !d.Foreign {
			m[d.ID] = d.Slot
		}
	}
	return m
}

// touched returns the device ids that calls changed (PUT, action, DELETE).
func touched(calls []apiCall) map[string]bool {
	m := map[string]bool{}
	for _, c := range calls {
		if c.DeviceID != "" && c.Method != http.MethodGet && c.Slot == "" {
			m[c.DeviceID] = true
		}
	}
	return m
}

var threeWaves = [][]string{{"ams1"}, {"fra2"}, {"ewr1", "sjc1"}}

// The plan of a three-wave rollout lists its changes under one heading per
// wave, in the order apply runs them; apply then creates no device of a
// wave before every device of the previous wave is ready.
func TestRolloutCreatesWaveByWave(t *testing.T) {
	r := newRollout(t)
	r.write(fleetYAML("v1", 2, threeWaves, "  max_unavailable: 1\n"))

	out := r.mustRun(2, "plan", "-f", r.fleet, "--detailed-exitcode")
	headings := []string{"Wave 1 (zones: ams1)", "Wave 2 (zones: fra2)", "Wave 3 (zones: ewr1, sjc1)"}
	members := [][]string{{"web-ams1-1", "web-ams1-2"}, {"web-fra2-1", "web-fra2-2"},
		{"web-ewr1-1", "web-ewr1-2", "web-sjc1-1", "web-sjc1-2"}}
	prev := -1
	for i, h := range headings {
		at := strings.Index(out, "\n"+h+"\n")
		if at <= prev {
			t.Fatalf("plan lacks heading %q after the previous one:\n%s", h, out)
		}
		end := len(out)
		if i+1 < len(headings) {
			end = strings.Index(out, headings[i+1])
		}
		for _, host := range members[i] {
			if !strings.Contains(out[at:max(at, end)], `# device "`+host+`" will be created`) {
				t.Errorf("%s is not planned under %q:\n%s", host, h, out)
			}
		}
		prev = at
	}

	mark := r.rec.mark()
	r.apply(0) // --wait active
	// A wave is ready when its devices are active. The simulator makes a
	// device active ProvisionTime after its create arrived, so a create of
	// the next wave must come later than that for every create of this one.
	activeBy := map[int]time.Time{} // wave -> earliest instant all its devices could be active
	firstCreate := map[int]time.Time{}
	var creates int
	for _, c := range r.rec.since(mark) {
		if c.Slot == "" {
			continue
		}
		creates++
		w := spec.Rollout{Waves: threeWaves}.WaveOf(zoneOf(t, c.Slot))
		if a := c.Start.Add(rolloutProvision); a.After(activeBy[w]) {
			activeBy[w] = a
		}
		if f, ok := firstCreate[w]; !ok || c.Start.Before(f) {
			firstCreate[w] = c.Start
		}
	}
	if creates != 8 {
		t.Fatalf("%d creates, want 8", creates)
	}
	for w := 1; w < 3; w++ {
		if !firstCreate[w].After(activeBy[w-1]) {
			t.Errorf("wave %d's first create came %v before wave %d could be active",
				w+1, activeBy[w-1].Sub(firstCreate[w]), w)
		}
	}
}

// A rebuild (reboot or reinstall) never has more than max_unavailable
// devices of a wave out of service at once, counting from the action that
// takes a device down until its new image has booted; the next wave's
// devices go down only after every device of the previous wave is back.
func TestRolloutRebuildKeepsMaxUnavailable(t *testing.T) {
	for _, how := range []string{"reboot", "reinstall"} {
		t.Run(how, func(t *testing.T) {
			r := newRollout(t)
			waves := [][]string{{"ams1"}, {"ewr1"}}
			extra := "  max_unavailable: 2\n  rebuild: " + how + "\n"
			r.write(fleetYAML("v1", 5, waves, extra))
			r.apply(0)
			before := r.status()
			slotOf := slotsByID(before)

			r.write(fleetYAML("v2", 5, waves, extra))
			out := r.mustRun(2, "plan", "-f", r.fleet, "--detailed-exitcode")
			if !strings.Contains(out, "will be rebuilt in-place ("+how+")") {
				t.Fatalf("plan does not rebuild by %s:\n%s", how, out)
			}
			mark := r.rec.mark()
			out = r.apply(0, "--wait", "booted")
			if !strings.Contains(out, "10 rebuilt") {
				t.Fatalf("apply:\n%s", out)
			}
			calls := r.rec.since(mark)
			byWave := map[string][]outage{}
			for _, o := range r.outages(calls, slotOf, "v2") {
				z := zoneOf(t, o.slot)
				byWave[z] = append(byWave[z], o)
			}
			for _, z := range []string{"ams1", "ewr1"} {
				if n := len(byWave[z]); n != 5 {
					t.Fatalf("%s: %d devices went down, want 5", z, n)
				}
				// Five devices, two at a time: the bound holds and is used.
				if p := peak(byWave[z]); p != 2 {
					t.Errorf("%s: at most %d devices were down at once, want exactly max_unavailable 2", z, p)
				}
			}
			var wave1Back time.Time
			for _, o := range byWave["ams1"] {
				if o.till.After(wave1Back) {
					wave1Back = o.till
				}
			}
			for _, c := range calls {
				if zoneOf(t, orSlot(slotOf, c)) == "ewr1" && !c.Start.After(wave1Back) {
					t.Errorf("%s %s of wave 2 came before every wave 1 device had booted", c.Method, c.Path)
				}
			}
			if after := ids(r.status()); fmt.Sprint(after) != fmt.Sprint(ids(before)) {
				t.Errorf("an in-place rebuild changed ids: %v -> %v", ids(before), after)
			}
			r.mustRun(0, "plan", "-f", r.fleet, "--detailed-exitcode")
		})
	}
}

// orSlot returns the slot a call is about ("" for fleet listings).
func orSlot(slotOf map[string]string, c apiCall) string {
	if c.Slot != "" {
		return c.Slot
	}
	if s, ok := slotOf[c.DeviceID]; ok {
		return s
	}
	return "web/none/1"
}

// --rebuild all rebuilds every device though nothing changed; with
// rollout.canary the first device of the first wave is rebuilt and booted
// before any other device is touched.
func TestRolloutCanaryFirstOnRebuildAll(t *testing.T) {
	r := newRollout(t)
	waves := [][]string{{"ams1"}, {"ewr1"}}
	extra := "  max_unavailable: 2\n  canary: 1\n"
	r.write(fleetYAML("v1", 4, waves, extra))
	r.apply(0)
	r.mustRun(0, "plan", "-f", r.fleet, "--detailed-exitcode")
	before := r.status()
	slotOf := slotsByID(before)
	bootsBefore := len(r.srv.Sim.Boots())

	out := r.mustRun(2, "plan", "-f", r.fleet, "--detailed-exitcode", "--rebuild", "all")
	if !strings.Contains(out, "Plan: 0 to add, 8 to rebuild, 0 to change, 0 to destroy.") ||
		!strings.Contains(out, "rebuild requested (--rebuild all)") {
		t.Fatalf("plan --rebuild all:\n%s", out)
	}
	mark := r.rec.mark()
	out = r.apply(0, "--rebuild", "all", "--wait", "booted")
	if !strings.Contains(out, "8 rebuilt") {
		t.Fatalf("apply --rebuild all:\n%s", out)
	}
	calls := r.rec.since(mark)
	os := r.outages(calls, slotOf, "v1")
	if len(os) != 8 {
		t.Fatalf("%d devices went down, want 8", len(os))
	}
	sort.Slice(os, func(i, j int) bool { return os[i].from.Before(os[j].from) })
	canary := os[0]
	if canary.slot != "web/ams1/1" {
		t.Errorf("the first device rebuilt is %s, want the canary web/ams1/1", canary.slot)
	}
	for _, c := range calls {
		// The fleet's lease (PUT /projects/{id}) is not a device change.
		if c.Method != http.MethodGet && c.DeviceID != canary.id && !c.Start.After(canary.till) && !strings.HasSuffix(c.Path, "/projects/"+r.srv.Sim.Project()) {
			t.Errorf("%s %s (%s) was sent before the canary had booted", c.Method, c.Path, slotOf[c.DeviceID])
		}
	}
	// After the canary, the rest of the wave goes two at a time.
	var rest []outage
	for _, o := range os[1:] {
		if zoneOf(t, o.slot) == "ams1" {
			rest = append(rest, o)
		}
	}
	if p := peak(rest); p != 2 {
		t.Errorf("after the canary, %d wave 1 devices were down at once, want 2", p)
	}
	if n := len(r.srv.Sim.Boots()) - bootsBefore; n != 8 {
		t.Errorf("%d boots, want one per device", n)
	}
	if after := ids(r.status()); fmt.Sprint(after) != fmt.Sprint(ids(before)) {
		t.Errorf("--rebuild all changed ids: %v -> %v", ids(before), after)
	}
	r.mustRun(0, "plan", "-f", r.fleet, "--detailed-exitcode")
}

// A release whose kernel is missing fails to boot on the first device of
// wave 1 it reaches: that device is retried once and reported, the rollout
// halts with a resume hint, and no other device is touched. Once the
// kernel is uploaded, a plain re-run completes the rollout, including the
// device whose boot failed.
func TestRolloutHaltsOnFailureAndResumes(t *testing.T) {
	r := newRollout(t)
	r.image("v3", "sshd-kernel") // the upload of v3 did not finish
	extra := "  max_unavailable: 1\n  max_failures: 0\n"
	r.write(fleetYAML("v1", 2, threeWaves, extra))
	r.apply(0)
	before := r.status()
	slotOf := slotsByID(before)

	r.write(fleetYAML("v3", 2, threeWaves, extra))
	mark := r.rec.mark()
	// Preflight would refuse the release; skip it to see the rollout stop it.
	out := r.apply(1, "--wait", "booted", "--skip-preflight")
	calls := r.rec.since(mark)
	changed := touched(calls)
	var victim string // the one device the rollout took down
	for id := range changed {
		if slotOf[id] != "" {
			if victim != "" {
				t.Fatalf("devices %s and %s were both changed; max_unavailable 1 and max_failures 0 allow one", slotOf[victim], slotOf[id])
			}
			victim = id
		}
	}
	slot := slotOf[victim]
	if zoneOf(t, slot) != "ams1" {
		t.Fatalf("the rollout began with %s, not in wave 1", slot)
	}
	var retried []string
	for _, c := range calls {
		switch {
		case c.Slot == slot:
			retried = append(retried, c.DeviceID)
		case c.Slot != "":
			t.Errorf("created a device in slot %s during the halted rollout", c.Slot)
		}
	}
	if len(retried) != 1 {
		t.Fatalf("the failed device was created again %d times, want once", len(retried))
	}
	boots := r.srv.Sim.Boots()
	for _, id := range []string{victim, retried[0]} {
		if b, ok := bootAfter(boots, id, calls[0].Start); !ok || b.OK || !strings.Contains(b.Error, "kernel") {
			t.Errorf("boot of %s: %+v", id, b)
		}
	}
	host := strings.ReplaceAll("web-"+strings.TrimPrefix(slot, "web/"), "/", "-")
	for _, want := range []string{
		host + " (" + slot + ") id " + retried[0] + ": boot failed: kernel: HEAD ",
		"wave 1 (ams1): 1 failed device(s) exceed max_failures 0",
		"run `lkfleet apply` again",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}

	// Finish the upload and run apply again: it picks up where it stopped.
	r.image("v3")
	out = r.mustRun(2, "plan", "-f", r.fleet, "--detailed-exitcode")
	if !strings.Contains(out, "Plan: 0 to add, 8 to rebuild") {
		t.Errorf("the resumed plan does not rebuild all eight devices, the failed one included:\n%s", out)
	}
	mark = r.rec.mark()
	r.apply(0, "--wait", "booted")
	boots = r.srv.Sim.Boots()
	for _, d := range r.status() {
		b, ok := bootAfter(boots, d.ID, r.rec.since(mark)[0].Start)
		if !ok || !b.OK || !strings.Contains(b.KernelURL, "/v3/") || d.Booted != "succeeded" || !d.Current {
			t.Errorf("after the resume, %s (%s): booted %q current %v, boot %+v", d.Slot, d.ID, d.Booted, d.Current, b)
		}
	}
	r.mustRun(0, "plan", "-f", r.fleet, "--detailed-exitcode")
}

// --wait booted waits for the image to report in: a good image succeeds;
// an image whose initrd is missing fails to boot, the device is deleted
// and created once more, fails again, and apply exits 1 naming the
// hostname, slot, id and last event. --wait active calls the same broken
// device ready, and the next plan rebuilds it.
func TestRolloutWaitBooted(t *testing.T) {
	t.Run("good image", func(t *testing.T) {
		r := newRollout(t)
		r.write(fleetYAML("v1", 1, [][]string{{"ams1"}}, ""))
		r.apply(0, "--wait", "booted")
		done := time.Now()
		devs := r.status()
		if len(devs) != 1 || devs[0].Booted != "succeeded" {
			t.Fatalf("status: %+v", devs)
		}
		b, ok := bootAfter(r.srv.Sim.Boots(), devs[0].ID, time.Time{})
		if !ok || !b.OK || !b.Time.Before(done) {
			t.Fatalf("apply --wait booted returned before the boot: %+v", b)
		}
	})
	t.Run("missing initrd", func(t *testing.T) {
		r := newRollout(t)
		r.image("broken", "sshd-initrd.img")
		r.write(fleetYAML("broken", 1, [][]string{{"ams1"}}, ""))
		mark := r.rec.mark()
		out := r.apply(1, "--wait", "booted", "--skip-preflight")
		calls := r.rec.since(mark)
		var created []string
		deleted := map[string]time.Time{}
		for _, c := range calls {
			if c.Slot != "" {
				created = append(created, c.DeviceID)
			}
			if c.Method == http.MethodDelete {
				deleted[c.DeviceID] = c.Start
			}
		}
		if len(created) != 2 {
			t.Fatalf("%d creates, want the device and one retry", len(created))
		}
		boots := r.srv.Sim.Boots()
		for _, id := range created {
			b, ok := bootAfter(boots, id, time.Time{})
			if !ok || b.OK || !strings.HasPrefix(b.Error, "initrd:") {
				t.Errorf("boot of %s: %+v", id, b)
			}
		}
		first, _ := bootAfter(boots, created[0], time.Time{})
		if at, ok := deleted[created[0]]; !ok || !at.After(first.Time) {
			t.Errorf("the first device was not deleted after its failed boot (deleted %v)", ok)
		}
		if _, ok := deleted[created[1]]; ok {
			t.Errorf("the retried device was deleted; it must stay for inspection")
		}
		for _, want := range []string{"web-ams1-1 (web/ams1/1) id " + created[1] + ": boot failed: initrd: HEAD "} {
			if !strings.Contains(out, want) {
				t.Errorf("apply output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("missing initrd with --wait active", func(t *testing.T) {
		r := newRollout(t)
		r.image("broken", "sshd-initrd.img")
		r.write(fleetYAML("broken", 1, [][]string{{"ams1"}}, ""))
		r.apply(0, "--skip-preflight") // active is not booted
		var booted []statusDevice
		for range 100 { // the boot runs as the device turns active
			if booted = r.status(); len(booted) == 1 && booted[0].Booted != "" {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if len(booted) != 1 || booted[0].Booted != "failed" {
			t.Fatalf("status: %+v", booted)
		}
		out := r.mustRun(2, "plan", "-f", r.fleet, "--detailed-exitcode", "--skip-preflight")
		if !strings.Contains(out, "last boot failed: initrd:") {
			t.Errorf("the next plan does not rebuild the device whose boot failed:\n%s", out)
		}
	})
}

// rebuild: recreate gives every slot a new device (new id, same hostname,
// a boot of the new image) and deletes each old device only after its
// replacement has booted.
func TestRolloutRecreate(t *testing.T) {
	r := newRollout(t)
	waves := [][]string{{"ams1"}, {"ewr1"}}
	extra := "  max_unavailable: 1\n  rebuild: recreate\n"
	r.write(fleetYAML("v1", 2, waves, extra))
	r.apply(0)
	before := r.status()
	host := map[string]string{}
	for _, d := range before {
		host[d.Slot] = d.Hostname
	}

	r.write(fleetYAML("v2", 2, waves, extra))
	out := r.mustRun(2, "plan", "-f", r.fleet, "--detailed-exitcode")
	if !strings.Contains(out, "will be rebuilt (recreate: a new device first, then this one is destroyed)") {
		t.Fatalf("plan:\n%s", out)
	}
	mark := r.rec.mark()
	out = r.apply(0, "--wait", "booted")
	if !strings.Contains(out, "4 rebuilt") {
		t.Fatalf("apply:\n%s", out)
	}
	calls := r.rec.since(mark)
	newID := map[string]string{}
	deletedAt := map[string]time.Time{}
	for _, c := range calls {
		if c.Slot != "" {
			newID[c.Slot] = c.DeviceID
		}
		if c.Method == http.MethodDelete {
			deletedAt[c.DeviceID] = c.Start
		}
	}
	boots := r.srv.Sim.Boots()
	after := r.status()
	if len(after) != 4 {
		t.Fatalf("after recreate: %+v", after)
	}
	for _, d := range after {
		old := ids(before)[d.Slot]
		switch {
		case d.ID == old:
			t.Errorf("%s kept its id %s", d.Slot, old)
		case d.ID != newID[d.Slot]:
			t.Errorf("%s is device %s, not the one created (%s)", d.Slot, d.ID, newID[d.Slot])
		case d.Hostname != host[d.Slot]:
			t.Errorf("%s: hostname %q, want %q", d.Slot, d.Hostname, host[d.Slot])
		}
		b, ok := bootAfter(boots, d.ID, time.Time{})
		if !ok || !b.OK || !strings.Contains(b.KernelURL, "/v2/") {
			t.Errorf("%s: boot of the new device: %+v", d.Slot, b)
			continue
		}
		at, ok := deletedAt[old]
		if !ok || !at.After(b.Time) {
			t.Errorf("%s: old device %s deleted at %v, before its replacement booted at %v (deleted: %v)", d.Slot, old, at, b.Time, ok)
		}
	}
	if n := r.srv.Sim.Stats().Duplicates; n != 0 {
		t.Errorf("%d duplicate slots left", n)
	}
	r.mustRun(0, "plan", "-f", r.fleet, "--detailed-exitcode")
}

// --rebuild GROUP and --rebuild SLOT reboot exactly the devices named and
// keep their ids; --replace SLOT gives that slot a new device and deletes
// the old one once the new one is active; unknown targets are refused.
func TestRolloutRebuildAndReplaceTargets(t *testing.T) {
	r := newRollout(t)
	r.write(strings.Replace(fleetYAML("v1", 2, [][]string{{"ams1"}}, ""), "rollout:", `  - name: db
    image: sshd
    count: 1
    zone: ams1
rollout:`, 1))
	r.apply(0)
	before := ids(r.status())
	slotOf := map[string]string{}
	for slot, id := range before {
		slotOf[id] = slot
	}
	changedSlots := func(calls []apiCall) []string {
		var out []string
		for id := range touched(calls) {
			out = append(out, slotOf[id])
		}
		sort.Strings(out)
		return out
	}

	for _, tc := range []struct {
		target, summary string
		want            []string
	}{
		{"db", "0 added, 1 rebuilt", []string{"db/ams1/1"}},
		{"web/ams1/2", "0 added, 1 rebuilt", []string{"web/ams1/2"}},
	} {
		mark := r.rec.mark()
		out := r.apply(0, "--rebuild", tc.target)
		calls := r.rec.since(mark)
		if got := changedSlots(calls); fmt.Sprint(got) != fmt.Sprint(tc.want) || !strings.Contains(out, tc.summary) {
			t.Errorf("--rebuild %s changed %v, want %v:\n%s", tc.target, got, tc.want, out)
		}
		var reboots int
		for _, c := range calls {
			if c.Action == "reboot" {
				reboots++
			}
		}
		if reboots != 1 {
			t.Errorf("--rebuild %s: %d reboots, want 1", tc.target, reboots)
		}
	}
	if now := ids(r.status()); fmt.Sprint(now) != fmt.Sprint(before) {
		t.Errorf("--rebuild changed ids: %v -> %v", before, now)
	}

	mark := r.rec.mark()
	out := r.apply(0, "--replace", "web/ams1/1")
	if !strings.Contains(out, "1 added, 0 rebuilt, 0 changed, 1 destroyed") {
		t.Errorf("--replace summary:\n%s", out)
	}
	var created apiCall
	var deleted []string
	var deleteAt time.Time
	for _, c := range r.rec.since(mark) {
		if c.Slot != "" {
			created = c
		}
		if c.Method == http.MethodDelete {
			deleted, deleteAt = append(deleted, slotOf[c.DeviceID]), c.Start
		}
	}
	if created.Slot != "web/ams1/1" || fmt.Sprint(deleted) != "[web/ams1/1]" {
		t.Fatalf("--replace web/ams1/1 created %q and deleted %v", created.Slot, deleted)
	}
	if !deleteAt.After(created.Start.Add(rolloutProvision)) {
		t.Errorf("the old device was deleted before the new one could be active")
	}
	now := ids(r.status())
	for slot, id := range before {
		if (id == now[slot]) != (slot != "web/ams1/1") {
			t.Errorf("%s: id %s -> %s", slot, id, now[slot])
		}
	}
	if now["web/ams1/1"] != created.DeviceID {
		t.Errorf("web/ams1/1 is %s, not the created %s", now["web/ams1/1"], created.DeviceID)
	}

	for _, bad := range [][]string{{"--rebuild", "nosuch"}, {"--replace", "web/ams1/9"}} {
		_, errs, code := r.run(append([]string{"plan", "-f", r.fleet}, bad...)...)
		if code != 1 || !strings.Contains(errs, bad[1]) {
			t.Errorf("plan %v: exit %d, stderr %q", bad, code, errs)
		}
	}
}

// stubLkfleet writes an executable "lkfleet" into dir that appends its
// arguments (and BUILD_ID and the token) to dir/calls and exits with $STUB_PLAN_EXIT for
// plan, 0 otherwise.
func stubLkfleet(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "lkfleet")
	stub := "#!/bin/sh\necho \"BUILD_ID=$BUILD_ID TOKEN=${PACKET_AUTH_TOKEN:-} $*\" >> '" + filepath.Join(dir, "calls") + "'\n" +
		"if [ \"$1\" = plan ]; then exit \"$STUB_PLAN_EXIT\"; fi\nexit 0\n"
	if err := os.WriteFile(bin, []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

const nightlyApply = "apply -f fleets/nightly-lab.yml --auto-approve --rebuild all --wait booted"

// The nightly examples gate the apply on plan --detailed-exitcode: 0 does
// nothing and succeeds, 2 applies with --auto-approve --rebuild all
// --wait booted, anything else fails without applying.
func TestNightlyExamples(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cases := []struct {
		planExit, wantExit int
		applied            bool
	}{{0, 0, false}, {2, 0, true}, {1, 1, false}, {3, 1, false}}

	t.Run("cron", func(t *testing.T) {
		for _, tc := range cases {
			dir := t.TempDir()
			// The token comes from the env file the script sources.
			envFile := filepath.Join(dir, "lab.env")
			if err := os.WriteFile(envFile, []byte("PACKET_AUTH_TOKEN=t0k\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(sh, filepath.Join("..", "..", "examples", "cron", "nightly-lab.sh"))
			cmd.Env = []string{
				"PATH=" + os.Getenv("PATH"), "LKFLEET=" + stubLkfleet(t, dir), "LKFLEET_ENV=" + envFile,
				"LOCK_FILE=" + filepath.Join(dir, "lock"), "BUILD_ID=2026-11-25.3",
				"STUB_PLAN_EXIT=" + fmt.Sprint(tc.planExit),
			}
			out, _ := cmd.CombinedOutput()
			calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
			wantCalls := "BUILD_ID=2026-11-25.3 TOKEN=t0k plan -f fleets/nightly-lab.yml --detailed-exitcode\n"
			if tc.applied {
				wantCalls += "BUILD_ID=2026-11-25.3 TOKEN=t0k " + nightlyApply + " --timeout 60m -o plain\n"
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.wantExit || string(calls) != wantCalls {
				t.Errorf("plan exit %d: script exit %d (want %d), calls:\n%s(want:\n%s)output:\n%s",
					tc.planExit, code, tc.wantExit, calls, wantCalls, out)
			}
		}
	})

	t.Run("github actions", func(t *testing.T) {
		data, err := os.ReadFile(filepath.Join("..", "..", "examples", "github-actions", "nightly-lab.yml"))
		if err != nil {
			t.Fatal(err)
		}
		var wf struct {
			Jobs map[string]struct {
				Env   map[string]string `yaml:"env"`
				Steps []struct {
					ID  string `yaml:"id"`
					If  string `yaml:"if"`
					Run string `yaml:"run"`
				} `yaml:"steps"`
			} `yaml:"jobs"`
		}
		if err := yaml.Unmarshal(data, &wf); err != nil {
			t.Fatalf("workflow is not YAML: %v", err)
		}
		job := wf.Jobs["rebuild"]
		if job.Env["PACKET_AUTH_TOKEN"] != "${{ secrets.PACKET_AUTH_TOKEN }}" {
			t.Errorf("the token does not come from a secret: %q", job.Env["PACKET_AUTH_TOKEN"])
		}
		var plan, apply string
		for _, s := range job.Steps {
			switch {
			case s.ID == "plan":
				plan = s.Run
			case strings.Contains(s.Run, "lkfleet apply"):
				apply = strings.Join(strings.Fields(s.Run), " ")
				if s.If != "steps.plan.outputs.changes == 'true'" {
					t.Errorf("apply runs if %q", s.If)
				}
			}
		}
		if !strings.Contains(apply, `lkfleet apply -f "$FLEET_FILE" --auto-approve --rebuild all --wait booted`) {
			t.Errorf("apply step: %q", apply)
		}
		// Run the plan step's script with the stub as lkfleet.
		for _, tc := range cases {
			dir := t.TempDir()
			stubLkfleet(t, dir)
			output := filepath.Join(dir, "output")
			cmd := exec.Command(sh, "-e", "-c", plan)
			cmd.Env = []string{
				"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH"),
				"FLEET_FILE=fleets/nightly-lab.yml", "BUILD_ID=b7", "GITHUB_OUTPUT=" + output,
				"GITHUB_STEP_SUMMARY=" + filepath.Join(dir, "summary"), "STUB_PLAN_EXIT=" + fmt.Sprint(tc.planExit),
			}
			out, _ := cmd.CombinedOutput()
			got, _ := os.ReadFile(output)
			want := ""
			if tc.wantExit == 0 {
				want = fmt.Sprintf("changes=%v\n", tc.applied)
			}
			if code := cmd.ProcessState.ExitCode(); code != tc.wantExit || string(got) != want {
				t.Errorf("plan exit %d: step exit %d (want %d), output %q (want %q)\n%s", tc.planExit, code, tc.wantExit, got, want, out)
			}
		}
	})
}
