package packet

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/lkfleet/lkfleet/internal/apispec"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// startSim runs the simulator on 127.0.0.1 and returns a client whose every
// request and response is checked against the API description.
//
// Responses of listings with thousands of devices take seconds to validate
// (minutes under -race); tests of such volumes pass validate false, the
// same requests with small answers are validated elsewhere.
func startSim(t *testing.T, simCfg packetsim.Config, validate bool, mod func(*Config)) (*Client, *packetsim.Server) {
	t.Helper()
	simCfg.Token, simCfg.Project, simCfg.Quiet = testToken, testProject, true
	srv, err := packetsim.Start(simCfg)
	if err != nil {
		t.Fatal(err)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	// Registered before apispec.Load, which skips the test when the API
	// description is absent: a skip must still stop the simulator, or
	// goleak fails the whole package instead of the test being skipped.
	t.Cleanup(func() {
		base.CloseIdleConnections()
		srv.Close()
	})
	var rt http.RoundTripper = base
	if validate {
		rt = apispec.NewValidatingTransport(t, apispec.Load(t), base)
	}
	cfg := Config{APIURL: srv.APIURL, Token: testToken, Project: testProject, Fleet: "lab",
		HTTPClient: &http.Client{Transport: rt}}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.tr.backoffBase = 2 * 1e6 // 2ms
	return c, srv
}

func seedFleet(t *testing.T, s *packetsim.Sim, fleet string, n int) {
	t.Helper()
	devs := make([]packetsim.SeedDevice, n)
	for i := range devs {
		devs[i].Hostname = fmt.Sprintf("%s-%d", cmpOr(fleet, "foreign"), i+1)
		if fleet != "" {
			devs[i].Tags = []string{spec.TagFleet + fleet, spec.TagSlot + spec.SlotName("g", "ams1", i+1)}
		} else {
			devs[i].Tags = []string{"someone-else"}
		}
	}
	if _, err := s.Seed(devs...); err != nil {
		t.Fatal(err)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

const listRoute = "GET /projects/{id}/devices"

func TestSimListing(t *testing.T) {
	for _, tc := range []struct {
		name           string
		fleet, foreign int
		requests       int
		validate       bool
	}{
		{"2500 devices over pages", 2500, 0, 3, false},
		{"5 fleet devices among 1500 foreign", 5, 1500, 1, true},
		{"10000 fleet devices", 10000, 0, 10, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := startSim(t, packetsim.Config{}, tc.validate, nil)
			seedFleet(t, srv.Sim, "", tc.foreign)
			seedFleet(t, srv.Sim, "lab", tc.fleet)
			devs, err := c.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, d := range devs {
				if d.Fleet() != "lab" || d.Slot() == "" || seen[d.Slot()] {
					t.Fatalf("bad or repeated device %+v", d)
				}
				seen[d.Slot()] = true
			}
			if len(devs) != tc.fleet {
				t.Errorf("listed %d devices, want %d", len(devs), tc.fleet)
			}
			if got := srv.Sim.Stats().Requests[listRoute]; got != tc.requests {
				t.Errorf("simulator saw %d listing requests, want %d", got, tc.requests)
			}
			if got := c.Stats().Requests; got != tc.requests {
				t.Errorf("client sent %d requests, want %d", got, tc.requests)
			}
		})
	}
}

// TestSimDeviceLifecycle runs every call the client makes against the
// simulator, each exchange validated against the API description.
func TestSimDeviceLifecycle(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{}, true, nil)
	ctx := context.Background()
	if _, err := c.List(ctx); err != nil {
		t.Fatal(err)
	}
	cat, err := c.Catalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cat.Plans) == 0 || len(cat.Metros) == 0 || len(cat.Facilities) == 0 {
		t.Fatalf("catalogue %+v", cat)
	}
	if _, err := c.CheckCapacity(ctx, map[planner.Need]int{{Zone: "ams1", Machine: "baremetal_0"}: 2, {Zone: "am", Machine: "baremetal_0"}: 1}); err != nil {
		t.Fatal(err)
	}
	d1, d2 := testDevice(), testDevice()
	d1.Machine, d2.Machine = "baremetal_0", "baremetal_0"
	d2.Zone, d2.Slot, d2.Hostname = "am", "web/am/1", "web-am-1"
	var ids []string
	for _, d := range []spec.Device{d1, d2} {
		live, err := c.Create(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		if live.Slot() != d.Slot || live.ID == "" {
			t.Errorf("created %+v", live)
		}
		ids = append(ids, live.ID)
	}
	devs, err := c.List(ctx)
	if err != nil || len(devs) != 2 {
		t.Fatalf("List = %d, %v", len(devs), err)
	}
	name := "web-ams1-renamed"
	tags := append(d1.Tags(), "extra")
	if err := c.Update(ctx, ids[0], planner.DeviceUpdate{Hostname: &name, Tags: &tags}); err != nil {
		t.Fatal(err)
	}
	listed, err := c.List(ctx)
	var found []planner.Live
	for _, l := range listed {
		if l.Slot() == d1.Slot {
			found = append(found, l)
		}
	}
	if err != nil || len(found) != 1 || found[0].Hostname != name {
		t.Fatalf("slot %s lists %+v, %v", d1.Slot, found, err)
	}
	for _, id := range ids {
		if err := c.Delete(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	// A second delete finds the device gone or going: success either way.
	if err := c.Delete(ctx, "00000000-0000-4000-8000-00000000dead"); err != nil {
		t.Errorf("deleting an unknown device: %v", err)
	}
	if st := srv.Sim.Stats(); st.Creates != 2 || st.Duplicates != 0 {
		t.Errorf("simulator stats %+v", st)
	}
}

// TestSimRateLimitedBurst: many concurrent calls against a rate limited
// simulator all complete, with few 429s.
func TestSimRateLimitedBurst(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{RateLimit: 200, Burst: 10}, false, nil)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range 10 {
				if _, err := c.List(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st, sst := c.Stats(), srv.Sim.Stats()
	if st.Requests-st.Throttled != 200 || sst.Throttled != st.Throttled {
		t.Errorf("client %+v, simulator throttled %d", st, sst.Throttled)
	}
	t.Logf("client %+v", st)
	if st.Throttled > 4 {
		t.Errorf("%d of %d requests were refused", st.Throttled, st.Requests)
	}
}

// TestSimFaultyListing: with a fifth of requests failing, a listing over
// several pages still completes through retries.
func TestSimFaultyListing(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{FaultRate: 0.2, Seed: 7}, false, func(cfg *Config) { cfg.MaxRetries = 10 })
	seedFleet(t, srv.Sim, "lab", 2500)
	devs, err := c.List(context.Background())
	if err != nil || len(devs) != 2500 {
		t.Fatalf("List = %d, %v", len(devs), err)
	}
	if c.Stats().Retries == 0 {
		t.Log("no fault hit the listing (seeded): nothing retried")
	}
}
