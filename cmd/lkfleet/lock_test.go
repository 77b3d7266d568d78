package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/chaos/harness"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// customdata reads the project's customdata as any client sees it.
func (e *e2e) customdata() map[string]json.RawMessage {
	e.t.Helper()
	var p struct {
		Customdata map[string]json.RawMessage `json:"customdata"`
	}
	e.api("GET", "projects/"+e.srv.Sim.Project(), "", &p)
	return p.Customdata
}

// api sends one request to the simulator and decodes its answer into out.
func (e *e2e) api(method, path, body string, out any) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.APIURL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", e2eToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		e.t.Fatalf("%s %s: %s %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			e.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// waitForLease returns once some run holds the fleet's lease and has
// begun its changes (a device exists): past its settle delay, so the lease
// is confirmed, not an attempt that may yet be withdrawn.
func (e *e2e) waitForLease(fleet string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var page struct {
			Devices []struct{} `json:"devices"`
		}
		e.api("GET", "projects/"+e.srv.Sim.Project()+"/devices", "", &page)
		if raw, ok := e.customdata()["lkfleet:lease:"+fleet]; ok && len(page.Devices) > 0 &&
			strings.Contains(string(raw), `"holder":"`) && !strings.Contains(string(raw), `"holder":""`) && !strings.Contains(string(raw), `"released_at"`) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatal("no run took the fleet's lease within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestConcurrentAppliesOfOneFleet runs applies of one fleet at once from
// the CLI: a second one with --lock-timeout 0 exits 1 naming the holder, a
// third waits for the first, plans again and finds nothing to do; plan
// says an apply is running; no slot ever holds two live devices.
func TestConcurrentAppliesOfOneFleet(t *testing.T) {
	e := newE2E(t, packetsim.Config{ProvisionTime: time.Second})
	e.api("PUT", "projects/"+e.srv.Sim.Project(), `{"customdata":{"team":{"owner":"ops"}}}`, nil)
	e.write(fmt.Sprintf(e2eFleet, "v1", 3))
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain"}
	sampler := harness.SampleLive(func() *packetsim.Sim { return e.srv.Sim }, "e2e", 5*time.Millisecond)

	var wg sync.WaitGroup
	var firstOut, thirdOut, thirdErr string
	var firstCode, thirdCode int
	wg.Go(func() { firstOut, _, firstCode = e.run(apply...) })
	e.waitForLease("e2e")

	_, errs, code := e.run(append(apply, "--lock-timeout", "0")...)
	if code != ExitError || !strings.Contains(errs, `Error: fleet "e2e" is locked: apply by `) || !strings.Contains(errs, " since ") {
		t.Errorf("second apply: exit %d, want 1 naming the holder; stderr:\n%s", code, errs)
	}
	_, errs, _ = e.run("plan", "-f", e.fleet)
	if !strings.Contains(errs, `Note: fleet "e2e" is being changed right now: apply by `) {
		t.Errorf("plan during an apply does not say so; stderr:\n%s", errs)
	}
	wg.Go(func() { thirdOut, thirdErr, thirdCode = e.run(append(apply, "--lock-timeout", "30s")...) })
	wg.Wait()

	most, worst, samples := sampler.Stop()
	if most > 1 {
		t.Errorf("a slot held %d live devices at once (%s)", most, worst)
	}
	if samples < 10 {
		t.Errorf("only %d samples of the fleet were taken", samples)
	}
	if firstCode != 0 || !strings.Contains(firstOut, "Apply complete: 6 added") {
		t.Errorf("first apply: exit %d\n%s", firstCode, firstOut)
	}
	if thirdCode != 0 || !strings.Contains(thirdErr, `Waiting up to 30s (--lock-timeout) for the lease on fleet "e2e": held by apply by `) ||
		!strings.Contains(thirdOut, "No changes.") {
		t.Errorf("waiting apply: exit %d\nstdout:\n%s\nstderr:\n%s", thirdCode, thirdOut, thirdErr)
	}
	if n := len(e.status()); n != 6 {
		t.Errorf("%d devices after the applies, want 6", n)
	}
	cd := e.customdata()
	if string(cd["team"]) != `{"owner":"ops"}` {
		t.Errorf("foreign customdata changed: %s", cd["team"])
	}
	// The last run's lease stays as a released record (lease.Prior).
	if raw := string(cd["lkfleet:lease:e2e"]); !strings.Contains(raw, `"released_at":"`) {
		t.Errorf("lease left behind after the applies: %s", raw)
	}
}

// TestUnlockBreaksAStaleLease plays a run killed while holding the lease.
func TestUnlockBreaksAStaleLease(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	expires := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	e.api("PUT", "projects/"+e.srv.Sim.Project(), `{"customdata":{"lkfleet:lease:e2e":{"holder":"gone/42/dead","host":"gone","pid":42,"op":"apply","since":"2026-01-02T03:04:05Z","expires":"`+expires+`"}}}`, nil)
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "-o", "plain"}

	_, errs, code := e.run(apply...)
	if code != ExitError || !strings.Contains(errs, `fleet "e2e" is locked: apply by gone/42/dead (pid 42 on gone) since 2026-01-02T03:04:05Z`) {
		t.Fatalf("apply under a stale lease: exit %d\n%s", code, errs)
	}
	if n := len(e.status()); n != 0 {
		t.Fatalf("apply under another's lease made %d devices", n)
	}
	_, errs, code = e.run("unlock", "-f", e.fleet)
	if code != ExitError || !strings.Contains(errs, "unlock needs confirmation") {
		t.Errorf("unlock without approval: exit %d\n%s", code, errs)
	}
	out := e.mustRun(0, "unlock", "-f", e.fleet, "--auto-approve")
	if !strings.Contains(out, `Broke the lease of apply by gone/42/dead (pid 42 on gone) since 2026-01-02T03:04:05Z`) {
		t.Errorf("unlock output:\n%s", out)
	}
	if out := e.mustRun(0, "unlock", "-f", e.fleet); !strings.Contains(out, `Fleet "e2e" is not locked.`) {
		t.Errorf("second unlock:\n%s", out)
	}
	if out := e.mustRun(0, apply...); !strings.Contains(out, "Apply complete: 2 added") {
		t.Errorf("apply after unlock:\n%s", out)
	}
}

// TestEmptyDestroyDeletesVLANsOnlyUnderTheLease: a destroy that finds no
// device but a VLAN left by an earlier destroy deletes it under the
// fleet's lease, so it cannot pull the VLAN from under a running apply.
func TestEmptyDestroyDeletesVLANsOnlyUnderTheLease(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(fmt.Sprintf(e2eFleet, "v1", 1))
	e.api("POST", "projects/"+e.srv.Sim.Project()+"/virtual-networks", `{"metro":"am","vxlan":1001,"tags":["lkfleet:fleet=e2e"]}`, nil)
	vlans := func() int {
		var vl struct {
			VirtualNetworks []json.RawMessage `json:"virtual_networks"`
		}
		e.api("GET", "projects/"+e.srv.Sim.Project()+"/virtual-networks", "", &vl)
		return len(vl.VirtualNetworks)
	}
	expires := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	e.api("PUT", "projects/"+e.srv.Sim.Project(), `{"customdata":{"lkfleet:lease:e2e":{"holder":"other/7/run","host":"other","pid":7,"op":"apply","since":"2026-01-02T03:04:05Z","expires":"`+expires+`"}}}`, nil)
	_, errs, code := e.run("destroy", "-f", e.fleet, "--auto-approve")
	if code != ExitError || !strings.Contains(errs, `fleet "e2e" is locked: apply by other/7/run`) {
		t.Fatalf("empty destroy under another's lease: exit %d\n%s", code, errs)
	}
	if n := vlans(); n != 1 {
		t.Fatalf("empty destroy under another's lease left %d VLANs, want the fleet's 1", n)
	}
	e.mustRun(0, "unlock", "-f", e.fleet, "--auto-approve")
	_, errs, code = e.run("destroy", "-f", e.fleet, "--auto-approve")
	if code != 0 || !strings.Contains(errs, "Deleted VLAN 1001 (metro am), created by fleet e2e.") {
		t.Fatalf("empty destroy: exit %d\n%s", code, errs)
	}
	if n := vlans(); n != 0 {
		t.Fatalf("%d VLANs after the destroy, want 0", n)
	}
}

// leaseGate is a proxy in front of the simulator's API that holds every
// fleet listing, once armed, until the lease was written and read back
// (the settle delay passed): held records, per run, whether the first
// listing came after that.
type leaseGate struct {
	next      http.Handler
	mu        sync.Mutex
	wrote     bool
	confirmed chan struct{}
	held      []bool
}

func (g *leaseGate) arm() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.wrote, g.confirmed = false, make(chan struct{})
}

func (g *leaseGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	project := path.Base(path.Dir(r.URL.Path)) == "projects"
	g.mu.Lock()
	confirmed := g.confirmed
	if project && r.Method == http.MethodPut {
		g.wrote = true
	}
	readBack := project && r.Method == http.MethodGet && g.wrote
	g.mu.Unlock()
	if confirmed != nil && path.Base(r.URL.Path) == "devices" && r.URL.Query().Get("tag") != "" {
		ok := true
		select {
		case <-confirmed:
		case <-time.After(5 * time.Second):
			ok = false
		}
		g.mu.Lock()
		if g.confirmed == confirmed {
			g.held, g.confirmed = append(g.held, ok), nil
		}
		g.mu.Unlock()
	}
	g.next.ServeHTTP(w, r)
	if readBack && confirmed != nil {
		g.mu.Lock()
		if g.confirmed == confirmed {
			close(confirmed)
		}
		g.mu.Unlock()
	}
}

// TestApplyTakesItsLeaseWhilePlanning: apply takes the fleet's lease
// before the plan lists the fleet, and the settle delay passes while it
// lists (the proxy holds the listing until the lease was read back); an
// apply that then finds nothing to do gives the lease it holds back
// exactly as it found it, the previous run's released record.
func TestApplyTakesItsLeaseWhilePlanning(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	gate := &leaseGate{next: httputil.NewSingleHostReverseProxy(must(url.Parse(e.srv.URL)))}
	proxy := httptest.NewServer(gate)
	t.Cleanup(proxy.Close)
	e.vars["PACKET_API_URL"] = proxy.URL + must(url.Parse(e.srv.APIURL)).Path
	e.write(fmt.Sprintf(e2eFleet, "v1", 2))
	apply := []string{"apply", "-f", e.fleet, "--auto-approve", "-o", "plain"}
	listings := func(want int) {
		t.Helper()
		gate.mu.Lock()
		defer gate.mu.Unlock()
		if len(gate.held) != want || slices.Contains(gate.held, false) {
			t.Fatalf("first fleet listing of each run after the lease was taken: %v, want %d × true", gate.held, want)
		}
	}

	gate.arm()
	if out := e.mustRun(0, apply...); !strings.Contains(out, "Apply complete: 4 added") {
		t.Fatalf("apply:\n%s", out)
	}
	listings(1)
	released := string(e.customdata()["lkfleet:lease:e2e"])
	if !strings.Contains(released, `"released_at":"`) {
		t.Fatalf("lease after the apply: %s", released)
	}

	gate.arm()
	if out := e.mustRun(0, apply...); !strings.Contains(out, "No changes.") {
		t.Fatalf("second apply:\n%s", out)
	}
	listings(2) // the second apply held the lease too
	if got := string(e.customdata()["lkfleet:lease:e2e"]); got != released {
		t.Errorf("an apply without changes left the lease as\n%s\nwant the record it found:\n%s", got, released)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
