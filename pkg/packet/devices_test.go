package packet

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

func TestListPaging(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fleet    int
		foreign  int
		omitMeta bool
		requests int
	}{
		{"empty fleet", 0, 0, false, 1},
		{"one short page", 5, 1500, false, 1},
		{"2500 over three pages", 2500, 0, false, 3},
		{"exactly three full pages", 3000, 0, false, 3},
		{"full page without meta needs one more", 1000, 0, true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeAPI{omitMeta: tc.omitMeta}
			f.seed(tc.foreign, "")
			f.seed(tc.fleet, "lab")
			c := startFake(t, f, nil)
			devs, err := c.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != tc.fleet {
				t.Errorf("listed %d devices, want %d", len(devs), tc.fleet)
			}
			if got := c.Stats().Requests; got != tc.requests {
				t.Errorf("listing cost %d requests, want %d", got, tc.requests)
			}
			for i, r := range f.requests {
				if !strings.Contains(r, "tag=lkfleet%3Afleet%3Dlab") || !strings.Contains(r, "per_page=1000") ||
					!strings.Contains(r, "page="+itoa(i+1)) || strings.Count(r, "/metal/v1") != 1 {
					t.Errorf("request %d: %s", i+1, r)
				}
			}
		})
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestListAll(t *testing.T) {
	f := &fakeAPI{}
	f.seed(3, "")
	f.seed(2, "lab")
	f.mu.Lock()
	f.devices = append(f.devices, map[string]any{"id": "x", "tags": []string{"lkfleet:fleet=other", "lkfleet:slot=g/ams1/1"}})
	f.mu.Unlock()
	c := startFake(t, f, nil)
	all, err := c.ListAll(context.Background())
	if err != nil || len(all) != 6 {
		t.Fatalf("ListAll = %d, %v; want 6", len(all), err)
	}
}

func TestToLive(t *testing.T) {
	raw := `{
	  "id": "d1", "short_id": "d1s", "hostname": "web-ams1-1", "state": "active",
	  "created_at": "2026-01-02T03:04:05Z", "billing_cycle": "hourly", "always_pxe": true,
	  "userdata": "#!ipxe", "ipxe_script_url": "", "sos": "d1@sos.ams1.platformequinix.com",
	  "tags": ["lab", "lkfleet:fleet=lab", "lkfleet:slot=web/ams1/1", "lkfleet:rev=abcdefabcdef"],
	  "plan": {"slug": "c3.small.x86"},
	  "facility": {"code": "ams1", "metro": {"code": "am"}},
	  "ip_addresses": [{"address": "147.75.1.2"}, {"address": "10.0.0.2"}],
	  "provisioning_events": [
	    {"type": "provisioning.104", "state": "", "created_at": "2026-01-02T03:05:00Z"},
	    {"type": "user.1001", "state": "succeeded", "body": "booted", "created_at": "2026-01-02T03:06:00Z"},
	    {"type": "user.1000", "state": "running", "body": "", "created_at": "2026-01-02T03:06:00Z"},
	    {"type": "user.1002", "state": "failed", "body": "old", "created_at": "2026-01-02T03:01:00Z"}
	  ]}`
	var d packngo.Device
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	l := toLive(&d)
	want := map[string][2]string{
		"fleet": {l.Fleet(), "lab"}, "slot": {l.Slot(), "web/ams1/1"}, "rev": {l.Rev(), "abcdefabcdef"},
		"machine": {l.Machine, "c3.small.x86"}, "facility": {l.Facility, "ams1"}, "metro": {l.Metro, "am"},
		"billing": {l.Billing, "hourly"}, "userdata": {l.Userdata, "#!ipxe"}, "sos": {l.SOS, d.SOS},
		"user state": {l.UserState, "succeeded"}, "user state body": {l.UserStateBody, "booted"},
		"short id": {l.ShortID, "d1s"},
	}
	for k, v := range want {
		if v[0] != v[1] {
			t.Errorf("%s = %q, want %q", k, v[0], v[1])
		}
	}
	if !l.AlwaysPXE || !slices.Equal(l.IPs, []string{"147.75.1.2", "10.0.0.2"}) ||
		!l.CreatedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) ||
		!l.UserStateAt.Equal(time.Date(2026, 1, 2, 3, 6, 0, 0, time.UTC)) || len(l.Tags) != 4 {
		t.Errorf("live = %+v", l)
	}
}

func TestUpdateBody(t *testing.T) {
	f := &fakeAPI{}
	c := startFake(t, f, nil)
	var none []string
	no := false
	name := "web-ams1-9"
	if err := c.Update(context.Background(), "00000000-0000-4000-8000-000000000001",
		planner.DeviceUpdate{Hostname: &name, Tags: &none, AlwaysPXE: &no}); err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	json.Unmarshal([]byte(f.bodies[0]), &body)
	if body["hostname"] != name || body["always_pxe"] != false || body["tags"] == nil || len(body) != 3 {
		t.Errorf("PUT body %s: want hostname, always_pxe false and tags []", f.bodies[0])
	}
}

func TestDeleteGoneIsSuccess(t *testing.T) {
	f := &fakeAPI{}
	c := startFake(t, f, nil)
	if err := c.Delete(context.Background(), "00000000-0000-4000-8000-000000000001"); err != nil {
		t.Fatalf("deleting a missing device: %v", err)
	}
	if !strings.Contains(f.bodies[0], `"force_delete":true`) {
		t.Errorf("DELETE body %q", f.bodies[0])
	}
}

// catalogueAPI serves plans, facilities and metros, counting requests.
type catalogueAPI struct {
	mu       sync.Mutex
	requests int
}

func (a *catalogueAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.requests++
	a.mu.Unlock()
	switch strings.TrimPrefix(r.URL.Path, "/metal/v1/") {
	case "plans":
		writeJSON(w, 200, map[string]any{"plans": []any{
			map[string]any{"slug": "c3.small.x86", "specs": map[string]any{"cpus": []any{map[string]any{"type": "Intel Xeon E-2278G"}}},
				"available_in":        []any{map[string]any{"href": "/metal/v1/facilities/f-ams1"}},
				"available_in_metros": []any{map[string]any{"href": "/metal/v1/locations/metros/m-am"}}},
			map[string]any{"slug": "c3.large.arm64", "specs": map[string]any{"cpus": []any{map[string]any{"type": "Ampere Altra"}}}},
		}})
	case "facilities":
		writeJSON(w, 200, map[string]any{"facilities": []any{
			map[string]any{"id": "f-ams1", "code": "ams1", "metro": map[string]any{"id": "m-am", "code": "am"}},
			map[string]any{"id": "f-ewr1", "code": "ewr1"},
		}})
	case "locations/metros":
		writeJSON(w, 200, map[string]any{"metros": []any{map[string]any{"id": "m-am", "code": "am"}}})
	case "capacity", "capacity/metros":
		var in capacityBody
		json.NewDecoder(r.Body).Decode(&in)
		for i := range in.Servers {
			ok := in.Servers[i].Quantity != "50"
			in.Servers[i].Available = &ok
		}
		writeJSON(w, 200, in)
	default:
		writeJSON(w, 404, map[string]any{"errors": []string{"no route"}})
	}
}

func TestCatalogueFetchedOnce(t *testing.T) {
	a := &catalogueAPI{}
	c := startFake(t, a, nil)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			if _, err := c.Catalogue(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	cat, _ := c.Catalogue(context.Background())
	if a.requests != 3 {
		t.Errorf("catalogue cost %d requests, want 3 once", a.requests)
	}
	x86 := cat.Plans["c3.small.x86"]
	if x86.Arch != "x86_64" || !slices.Equal(x86.Locations, []string{"am", "ams1"}) {
		t.Errorf("c3.small.x86 = %+v", x86)
	}
	if cat.Plans["c3.large.arm64"].Arch != "aarch64" || cat.Facilities["ams1"] != "am" || !cat.Metros["am"] {
		t.Errorf("catalogue = %+v", cat)
	}
	if _, ok := cat.Facilities["ewr1"]; !ok {
		t.Error("ewr1 missing")
	}
	// With the catalogue known, zones are told apart by it, not by form.
	if !c.isMetro("am") || c.isMetro("ams1") {
		t.Error("isMetro disagrees with the catalogue")
	}
}

func TestCheckCapacity(t *testing.T) {
	a := &catalogueAPI{}
	c := startFake(t, a, nil)
	warnings, err := c.CheckCapacity(context.Background(), map[planner.Need]int{
		{Zone: "ams1", Machine: "c3.small.x86"}: 50,
		{Zone: "am", Machine: "c3.small.x86"}:   2,
		{Zone: "ewr1", Machine: "c3.small.x86"}: 0,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(warnings, []string{"no capacity for 50 × c3.small.x86 in ams1"}) {
		t.Errorf("warnings = %q", warnings)
	}
	if a.requests != 2 {
		t.Errorf("capacity check cost %d requests, want 2 (facilities, metros)", a.requests)
	}
}
