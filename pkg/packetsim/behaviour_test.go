package packetsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

func createBody(extra string) string {
	return `{"plan":"baremetal_0","facility":"ams1","operating_system":"custom_ipxe","tags":["t"],` + extra + `}`
}

func TestLifecycleQueuedProvisioningActiveDeprovisioningGone(t *testing.T) {
	srv := startSim(t, packetsim.Config{ProvisionTime: 200 * time.Millisecond, DeprovisionTime: 60 * time.Millisecond})
	d := createRaw(t, srv, createBody(`"userdata":`+jsonString(goodScript(srv))))
	if d.State != "queued" {
		t.Fatalf("state right after create %q, want queued", d.State)
	}
	states := []string{"queued"}
	waitFor(t, "active", 5*time.Second, func() bool {
		g, _ := getDevice(t, srv, d.ID)
		if states[len(states)-1] != g.State {
			states = append(states, g.State)
		}
		return g.State == "active"
	})
	if !slices.Equal(states, []string{"queued", "provisioning", "active"}) {
		t.Errorf("states seen %v, want queued, provisioning, active", states)
	}
	waitFor(t, "user state", 5*time.Second, func() bool { g, _ := getDevice(t, srv, d.ID); s, _ := g.userState(); return s != "" })
	if g, _ := getDevice(t, srv, d.ID); func() string { s, _ := g.userState(); return s }() != "succeeded" {
		t.Fatalf("user state after a good boot: %+v", g.ProvisioningEvents)
	}
	if resp := apiDo(t, srv, "DELETE", "/metal/v1/devices/"+d.ID+"?force_delete=true", "", nil); resp.StatusCode != 204 {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	if g, code := getDevice(t, srv, d.ID); code != 200 || g.State != "deprovisioning" {
		t.Fatalf("after delete: %d %q, want 200 deprovisioning", code, g.State)
	}
	waitFor(t, "404", 5*time.Second, func() bool { _, code := getDevice(t, srv, d.ID); return code == 404 })
	var l struct{ Devices []device }
	apiDo(t, srv, "GET", "/metal/v1/projects/"+testProject+"/devices", "", &l)
	if len(l.Devices) != 0 {
		t.Fatalf("gone device still listed: %+v", l.Devices)
	}
}

func TestFailProvisionRateEndsFailedWithoutBoot(t *testing.T) {
	srv := startSim(t, packetsim.Config{ProvisionTime: 10 * time.Millisecond, FailProvisionRate: 1})
	d := createRaw(t, srv, createBody(`"userdata":`+jsonString(goodScript(srv))))
	waitFor(t, "failed", 5*time.Second, func() bool { g, _ := getDevice(t, srv, d.ID); return g.State == "failed" })
	if n := len(srv.Sim.Boots()); n != 0 {
		t.Fatalf("%d boots of a device that failed to provision", n)
	}
}

// bootOf waits for the device's first boot record and user state.
func bootOf(t *testing.T, srv *packetsim.Server, id string) (packetsim.Boot, string, string) {
	t.Helper()
	var b packetsim.Boot
	waitFor(t, "boot of "+id, 5*time.Second, func() bool {
		for _, x := range srv.Sim.Boots() {
			if x.DeviceID == id {
				b = x
				return true
			}
		}
		return false
	})
	g, _ := getDevice(t, srv, id)
	st, body := g.userState()
	return b, st, body
}

func TestBoots(t *testing.T) {
	srv := startSim(t, packetsim.Config{ProvisionTime: 5 * time.Millisecond})
	imgs := srv.URL + "/images"
	cases := []struct {
		name, body string
		ok         bool
		source     string
		reason     string
	}{
		{"userdata", `"userdata":` + jsonString(goodScript(srv)), true, "userdata", ""},
		{"script url", `"ipxe_script_url":"` + imgs + `/good.ipxe"`, true, imgs + "/good.ipxe", ""},
		{"chain to script", `"userdata":` + jsonString("#!ipxe\nchain "+imgs+"/good.ipxe\n"), true, "userdata", ""},
		{"broken script", `"userdata":` + jsonString("#!ipxe\nkernal "+imgs+"/good-kernel\nboot\n"), false, "userdata", `unknown command "kernal"`},
		{"missing kernel", `"userdata":` + jsonString("#!ipxe\nkernel "+imgs+"/nope-kernel\nboot\n"), false, "userdata", "HEAD " + imgs + "/nope-kernel: HTTP 404"},
		{"missing initrd", `"userdata":` + jsonString("#!ipxe\nkernel "+imgs+"/good-kernel\ninitrd "+imgs+"/nope.img\nboot\n"), false, "userdata", "initrd: HEAD"},
		{"missing script", `"ipxe_script_url":"` + imgs + `/nope.ipxe"`, false, imgs + "/nope.ipxe", "HTTP 404"},
		{"remote script refused", `"ipxe_script_url":"http://192.0.2.1/x.ipxe"`, false, "http://192.0.2.1/x.ipxe", "only loopback URLs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := createRaw(t, srv, createBody(tc.body))
			b, st, body := bootOf(t, srv, d.ID)
			if b.OK != tc.ok || b.Source != tc.source || !strings.Contains(b.Error, tc.reason) {
				t.Fatalf("boot = %+v, want ok %v source %q error containing %q", b, tc.ok, tc.source, tc.reason)
			}
			want := map[bool]string{true: "succeeded", false: "failed"}[tc.ok]
			if st != want || (!tc.ok && body != b.Error) {
				t.Fatalf("user state %q (%q), want %q with the boot error", st, body, want)
			}
			if tc.ok && (b.KernelURL != imgs+"/good-kernel" || !strings.Contains(b.Args, "console=ttyS1") || !slices.Equal(b.InitrdURLs, []string{imgs + "/good-initrd.img"})) {
				t.Fatalf("good boot record %+v", b)
			}
		})
	}
}

func TestRebootWithoutAlwaysPXEBootsEmptyDisk(t *testing.T) {
	srv := startSim(t, packetsim.Config{ProvisionTime: 5 * time.Millisecond})
	d := createRaw(t, srv, createBody(`"userdata":`+jsonString(goodScript(srv))))
	if b, _, _ := bootOf(t, srv, d.ID); !b.OK {
		t.Fatalf("first boot failed: %+v", b)
	}
	if resp := apiDo(t, srv, "POST", "/metal/v1/devices/"+d.ID+"/actions", `{"type":"reboot"}`, nil); resp.StatusCode != 202 {
		t.Fatalf("reboot: %d", resp.StatusCode)
	}
	waitFor(t, "second boot", 5*time.Second, func() bool { return len(srv.Sim.Boots()) == 2 })
	b := srv.Sim.Boots()[1]
	if b.OK || b.Source != "local-disk" || !strings.Contains(b.Error, "always_pxe is false") {
		t.Fatalf("reboot without always_pxe: %+v", b)
	}
	g, _ := getDevice(t, srv, d.ID)
	if st, _ := g.userState(); st != "failed" || len(g.ProvisioningEvents) != 2 {
		t.Fatalf("newest user state %q of %d events, want failed of 2", st, len(g.ProvisioningEvents))
	}
}

func TestErrorsLikeTheService(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	raw := func(method, path, token, body string) (int, []string) {
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("X-Auth-Token", token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e struct{ Errors []string }
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &e)
		if resp.Header.Get("X-RateLimit-Limit") == "" && strings.HasPrefix(path, "/metal/") {
			t.Errorf("%s %s: no X-RateLimit-Limit header", method, path)
		}
		return resp.StatusCode, e.Errors
	}
	devices := "/metal/v1/projects/" + testProject + "/devices"
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		msg                             string
	}{
		{"no token", "GET", devices, "", "", 401, "Invalid authentication token"},
		{"wrong token", "GET", devices, "nope", "", 401, "Invalid authentication token"},
		{"unknown device", "GET", "/metal/v1/devices/0b3c4d5e-0000-4000-8000-000000000000", testToken, "", 404, "Not found"},
		{"malformed id", "GET", "/metal/v1/devices/xyz", testToken, "", 404, "Not found"},
		{"other project", "GET", "/metal/v1/projects/0b3c4d5e-0000-4000-8000-000000000000/devices", testToken, "", 404, "Not found"},
		{"unknown route", "GET", "/metal/v1/nothing", testToken, "", 404, "Not found"},
		{"per_page too big", "GET", devices + "?per_page=1001", testToken, "", 422, "per_page"},
		{"unknown plan", "POST", devices, testToken, `{"plan":"huge","metro":"am","operating_system":"custom_ipxe","ipxe_script_url":"http://127.0.0.1/x"}`, 422, `Plan "huge"`},
		{"unknown metro", "POST", devices, testToken, `{"plan":"baremetal_0","metro":"zz","operating_system":"custom_ipxe","ipxe_script_url":"http://127.0.0.1/x"}`, 422, `Metro "zz"`},
		{"metro and facility", "POST", devices, testToken, `{"plan":"baremetal_0","metro":"am","facility":"ams1","operating_system":"custom_ipxe","ipxe_script_url":"http://127.0.0.1/x"}`, 422, "Only one of metro or facility"},
		{"no location", "POST", devices, testToken, `{"plan":"baremetal_0","operating_system":"custom_ipxe","ipxe_script_url":"http://127.0.0.1/x"}`, 422, "Either metro or facility"},
		{"no os", "POST", devices, testToken, `{"plan":"baremetal_0","metro":"am"}`, 422, "operating_system is required"},
		{"custom_ipxe without script", "POST", devices, testToken, `{"plan":"baremetal_0","metro":"am","operating_system":"custom_ipxe","userdata":"#cloud-config"}`, 422, "ipxe_script_url is required"},
		{"plan not sold there", "POST", devices, testToken, `{"plan":"baremetal_0","facility":"sy4","operating_system":"ubuntu_22_04"}`, 422, "not available in sy4"},
		{"bad action", "POST", "/metal/v1/devices/0b3c4d5e-0000-4000-8000-000000000000/actions", testToken, `{"type":"explode"}`, 422, "type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, msgs := raw(tc.method, tc.path, tc.token, tc.body)
			if status != tc.status || len(msgs) == 0 || !strings.Contains(strings.Join(msgs, "; "), tc.msg) {
				t.Fatalf("%d %q, want %d with %q", status, msgs, tc.status, tc.msg)
			}
		})
	}
	// An action on a device that is not active yet.
	slow := startSim(t, packetsim.Config{ProvisionTime: time.Hour})
	d := createRaw(t, slow, createBody(`"userdata":"#!ipxe\nboot"`))
	var e struct{ Errors []string }
	if resp := apiDo(t, slow, "POST", "/metal/v1/devices/"+d.ID+"/actions", `{"type":"reboot"}`, &e); resp.StatusCode != 422 || !strings.Contains(e.Errors[0], "queued") {
		t.Fatalf("reboot while queued: %d %v", resp.StatusCode, e.Errors)
	}
}

func TestRateLimitPerToken(t *testing.T) {
	// No Token: any token is accepted, each with its own bucket.
	srv, err := packetsim.Start(packetsim.Config{RateLimit: 1, Burst: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	get := func(token string) *http.Response {
		req, _ := http.NewRequest("GET", srv.APIURL+"plans", nil)
		req.Header.Set("X-Auth-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	var remaining []string
	for range 3 {
		resp := get("a")
		if resp.StatusCode != 200 {
			t.Fatalf("request within burst: %d", resp.StatusCode)
		}
		remaining = append(remaining, resp.Header.Get("X-RateLimit-Remaining"))
	}
	if !slices.Equal(remaining, []string{"2", "1", "0"}) {
		t.Errorf("X-RateLimit-Remaining %v, want 2 1 0", remaining)
	}
	resp := get("a")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || resp.Header.Get("X-RateLimit-Limit") != "3" {
		t.Fatalf("over the limit: %d Retry-After %q Limit %q", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("X-RateLimit-Limit"))
	}
	if reset := resp.Header.Get("X-RateLimit-Reset"); reset <= "0" || len(reset) < 10 {
		t.Errorf("X-RateLimit-Reset %q, want Unix seconds", reset)
	}
	if resp := get("b"); resp.StatusCode != 200 {
		t.Fatalf("another token shares the bucket: %d", resp.StatusCode)
	}
	if st := srv.Sim.Stats(); st.Throttled != 1 || st.Status["429"] != 1 || st.Requests["GET /plans"] != 5 {
		t.Fatalf("stats %+v", st)
	}
}

// outcome classifies one GET for the fault tests.
func outcome(srv *packetsim.Server, path string) string {
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	req.Header.Set("X-Auth-Token", testToken)
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return "dropped"
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		return "truncated"
	}
	return http.StatusText(resp.StatusCode)
}

func TestFaultsAreReproducible(t *testing.T) {
	run := func() []string {
		srv := startSim(t, packetsim.Config{FaultRate: 0.8, Seed: 42})
		var out []string
		for range 40 {
			out = append(out, outcome(srv, "/metal/v1/projects/"+testProject+"/devices"))
		}
		return out
	}
	a, b := run(), run()
	if !slices.Equal(a, b) {
		t.Fatalf("same seed, different faults:\n%v\n%v", a, b)
	}
	for _, want := range []string{"OK", "Internal Server Error", "Bad Gateway", "Service Unavailable", "dropped", "truncated"} {
		if !slices.Contains(a, want) {
			t.Errorf("no %q among %v", want, a)
		}
	}
}

func TestAmbiguousCreateCreatesTheDevice(t *testing.T) {
	srv := startSim(t, packetsim.Config{AmbiguousCreateRate: 1, ProvisionTime: time.Hour})
	req, _ := http.NewRequest("POST", srv.APIURL+"projects/"+testProject+"/devices",
		strings.NewReader(createBody(`"hostname":"amb","tags":["lkfleet:fleet=f","lkfleet:slot=g/ams1/1"],"userdata":"#!ipxe"`)))
	req.Header.Set("X-Auth-Token", testToken)
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode < 500 {
			t.Fatalf("ambiguous create answered %d", resp.StatusCode)
		}
	}
	var l struct{ Devices []device }
	apiDo(t, srv, "GET", "/metal/v1/projects/"+testProject+"/devices?tag=lkfleet:slot=g/ams1/1", "", &l)
	if len(l.Devices) != 1 || l.Devices[0].Hostname != "amb" {
		t.Fatalf("device of the failed create: %+v", l.Devices)
	}
	if st := srv.Sim.Stats(); st.Creates != 1 || st.Duplicates != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestListLagHidesNewDevices(t *testing.T) {
	srv := startSim(t, packetsim.Config{ListLag: 150 * time.Millisecond, ProvisionTime: time.Hour})
	d := createRaw(t, srv, createBody(`"userdata":"#!ipxe"`))
	list := func() int {
		var l struct {
			Devices []device
			Meta    struct{ Total int }
		}
		apiDo(t, srv, "GET", "/metal/v1/projects/"+testProject+"/devices", "", &l)
		return l.Meta.Total
	}
	if n := list(); n != 0 {
		t.Fatalf("new device listed at once (%d)", n)
	}
	if _, code := getDevice(t, srv, d.ID); code != 200 {
		t.Fatalf("GET of a lagging device: %d", code)
	}
	waitFor(t, "device listed", 5*time.Second, func() bool { return list() == 1 })
}

func TestStatsAndDuplicates(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	if _, err := srv.Sim.Seed(
		packetsim.SeedDevice{Hostname: "a", Tags: []string{"lkfleet:fleet=lab", "lkfleet:slot=web/ams1/1"}},
		packetsim.SeedDevice{Hostname: "b", Tags: []string{"lkfleet:fleet=lab", "lkfleet:slot=web/ams1/1"}},
		packetsim.SeedDevice{Hostname: "c", Tags: []string{"lkfleet:fleet=other", "lkfleet:slot=web/ams1/1"}},
		packetsim.SeedDevice{Hostname: "d", Tags: []string{"lkfleet:fleet=lab", "lkfleet:slot=web/ams1/2"}, Zone: "ny", Plan: "c3.small.x86"},
	); err != nil {
		t.Fatal(err)
	}
	apiDo(t, srv, "GET", "/metal/v1/projects/"+testProject+"/devices?metro=ny", "", nil)
	var st packetsim.Stats
	resp, err := http.Get(srv.URL + "/sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Duplicates != 1 || st.Requests["GET /projects/{id}/devices"] != 1 || st.Status["200"] != 1 || st.PeakInFlight != 1 {
		t.Fatalf("stats %+v", st)
	}
	var boots []packetsim.Boot
	resp, _ = http.Get(srv.URL + "/sim/boots")
	if err := json.NewDecoder(resp.Body).Decode(&boots); err != nil || boots == nil {
		t.Fatalf("/sim/boots: %v %v", boots, err)
	}
	resp.Body.Close()
}

func TestImagesServeRanges(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	req, _ := http.NewRequest("GET", srv.URL+"/images/good-kernel", nil)
	req.Header.Set("Range", "bytes=0-2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(b) != "KER" {
		t.Fatalf("range GET: %d %q", resp.StatusCode, b)
	}
}

func TestStateFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	imgs := t.TempDir()
	state := filepath.Join(dir, "state.json")
	cfg := packetsim.Config{StateFile: state, ImagesDir: imgs, ProvisionTime: 10 * time.Millisecond, SaveDelay: time.Millisecond, Token: testToken, Project: testProject}
	writeFile(t, filepath.Join(imgs, "good-kernel"), "K")
	writeFile(t, filepath.Join(imgs, "good-initrd.img"), "I")
	srv, err := packetsim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := createRaw(t, srv, createBody(`"hostname":"keep","userdata":`+jsonString(goodScript(srv))))
	gone := createRaw(t, srv, createBody(`"hostname":"gone","operating_system":"ubuntu_22_04"`)) // never boots
	apiDo(t, srv, "DELETE", "/metal/v1/devices/"+gone.ID, "", nil)
	bootOf(t, srv, d.ID)
	waitFor(t, "state saved", 5*time.Second, func() bool {
		b, err := os.ReadFile(state)
		return err == nil && strings.Contains(string(b), `"state":"succeeded"`)
	})
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.Project = ""
	srv2, err := packetsim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	if srv2.Sim.Project() != testProject {
		t.Fatalf("project after reload %q", srv2.Sim.Project())
	}
	g, code := getDevice(t, srv2, d.ID)
	if st, _ := g.userState(); code != 200 || g.Hostname != "keep" || g.State != "active" || st != "succeeded" {
		t.Fatalf("reloaded device %d %+v", code, g)
	}
	if _, code := getDevice(t, srv2, gone.ID); code != 404 {
		t.Fatalf("deleted device after reload: %d", code)
	}
	if n := len(srv2.Sim.Boots()); n != 1 {
		t.Fatalf("boots after reload %d, want 1", n)
	}

	// A corrupt state file is an error, not an empty simulator.
	writeFile(t, state, "{")
	if _, err := packetsim.Start(cfg); err == nil || !strings.Contains(err.Error(), "load state") {
		t.Fatalf("corrupt state: %v", err)
	}
}

// Closing a server twice (a test's deferred Close after an explicit one)
// returns at once with the first result instead of waiting forever.
func TestServerCloseTwice(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	srv, err := packetsim.Start(packetsim.Config{StateFile: state, SaveDelay: time.Millisecond, Token: testToken, Project: testProject, Quiet: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Before Shutdown ran once, this call blocked until the test binary's
	// timeout.
	if err := srv.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("state file not written: %v", err)
	}
}
