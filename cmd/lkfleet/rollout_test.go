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
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
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
	// hold, when set, is called with every device action before it is
	// passed on (see holdPair).
	hold func(deviceID, action string)
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
	parts := strings.Split(strings.Trim(c.Path, "/"), "/")
	if len(parts) == 3 && parts[0] == "devices" && parts[2] == "actions" {
		var in struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(reqBody, &in)
		c.Action = in.Type
		rec.mu.Lock()
		hold := rec.hold
		rec.mu.Unlock()
		if hold != nil {
			hold(parts[1], c.Action)
		}
	}
	bw := &bodyWriter{ResponseWriter: w}
	rec.h.ServeHTTP(bw, r)
	c.End, c.Status = time.Now(), bw.status

	switch {
	case len(parts) >= 2 && parts[0] == "devices":
		c.DeviceID = parts[1]
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

// holdPair makes the first reboot or reinstall of device a or b wait
// until the other's has arrived too (at most a minute, so a rollout that
// never sends the second fails its checks instead of hanging): the
// simulator boots a device a fixed time after its action, so two devices
// whose actions the rollout allows at once are then down at once however
// slowly the second one's calls came.
func (rec *recorder) holdPair(a, b string) {
	both := make(chan struct{})
	var once sync.Once
	arrived := map[string]bool{}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.hold = func(id, action string) {
		if (id != a && id != b) || (action != "reboot" && action != "reinstall") {
			return
		}
		rec.mu.Lock()
		arrived[id] = true
		if arrived[a] && arrived[b] {
			once.Do(func() { close(both) })
		}
		rec.mu.Unlock()
		select {
		case <-both:
		case <-time.After(time.Minute):
		}
	}
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
	s, ok := spec.ParseSlot(slot)
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
	// max_unavailable 2 lets the two devices after the canary go down
	// together: their actions are held until both were sent, so their
	// outages overlap whatever the machine's load (a rollout that sends
	// one only after the other booted shows a peak of 1 a minute later).
	idOf := map[string]string{}
	for id, slot := range slotOf {
		idOf[slot] = id
	}
	r.rec.holdPair(idOf["web/ams1/2"], idOf["web/ams1/3"])
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
		"Fix the cause, then run `lkfleet apply -f " + shellQuote(r.fleet) + " --wait booted` again",
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

const nightlyApply = "apply -f fleets/nightly-lab.yml --auto-approve --rebuild all --wait booted"
