package packet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// sameLive decodes raw (a JSON array of devices) into packngo.Device with
// encoding/json and into listedDevice with the listings' decoder
// (decodePage) and fails unless both map to the same Live: a field the
// plan reads that the lean decode drops, or that the two decoders read
// differently, fails here.
func sameLive(t *testing.T, raw []byte) int {
	t.Helper()
	var full []packngo.Device
	var slim []listedDevice
	if err := json.Unmarshal(raw, &full); err != nil {
		t.Fatal(err)
	}
	if err := decodePage(raw, &slim); err != nil {
		t.Fatal(err)
	}
	if len(full) != len(slim) {
		t.Fatalf("decoded %d and %d devices", len(full), len(slim))
	}
	for i := range full {
		want, got := toLive(&full[i]), slim[i].live()
		if !reflect.DeepEqual(want, got) {
			t.Errorf("device %d:\n full %+v\n slim %+v", i, want, got)
		}
	}
	return len(full)
}

func TestListedDeviceMapsLikePackngo(t *testing.T) {
	raw := `[{
	  "id": "d1", "short_id": "d1s", "hostname": "web-ams1-1", "state": "active",
	  "created_at": "2026-01-02T03:04:05Z", "billing_cycle": "hourly", "always_pxe": true,
	  "userdata": "#!ipxe", "ipxe_script_url": "", "sos": "d1@sos.ams1.platformequinix.com",
	  "tags": ["lab", "lkfleet:fleet=lab", "lkfleet:slot=web/ams1/1", "lkfleet:rev=abcdefabcdef"],
	  "plan": {"slug": "c3.small.x86", "name": "c3.small", "specs": {"cpus": [{"count": 1, "type": "x"}]}},
	  "facility": {"code": "ams1", "name": "Amsterdam", "metro": {"code": "am", "id": "m1"}, "address": {"address": "x"}},
	  "ip_addresses": [{"address": "147.75.1.2", "public": true, "assigned_to": {"href": "/x"}}, {"address": "10.0.0.2"}, {"address": ""}],
	  "provisioning_events": [
	    {"type": "provisioning.104", "state": "", "created_at": "2026-01-02T03:05:00Z", "relationships": [{"href": "/y"}]},
	    {"type": "user.1001", "state": "succeeded", "body": "booted", "created_at": "2026-01-02T03:06:00Z"},
	    {"type": "user.1000", "state": "running", "body": "", "created_at": "2026-01-02T03:06:00Z"},
	    {"type": "user.1002", "state": "failed", "body": "old", "created_at": "2026-01-02T03:01:00Z"},
	    {"type": "user.1002", "state": "failed", "body": "no time"}
	  ]},
	 {"id": "d2", "hostname": "db-am-1", "state": "provisioning", "metro": {"code": "am"},
	  "ipxe_script_url": "http://x/s.ipxe", "userdata": "mine", "tags": [], "ip_addresses": [],
	  "plan": null, "created_at": "not a time"},
	 {"id": "d3", "facility": {"code": "ewr1"}, "metro": {"code": ""}}]`
	if n := sameLive(t, []byte(raw)); n != 3 {
		t.Fatalf("decoded %d devices, want 3", n)
	}
}

// TestListedDeviceMapsSimulatorPage checks a real listing page: devices in
// facilities and metros, booted, failed, provisioning and foreign.
func TestListedDeviceMapsSimulatorPage(t *testing.T) {
	_, srv := startSim(t, packetsim.Config{ProvisionTime: time.Hour}, false, nil)
	seeds := []packetsim.SeedDevice{
		{Hostname: "a", Tags: []string{spec.TagFleet + "lab", spec.TagSlot + "g/ams1/1"}, Zone: "ams1", AlwaysPXE: true, Userdata: "#!ipxe\nboot\n", UserState: packetsim.UserStateSucceeded},
		{Hostname: "b", Tags: []string{spec.TagFleet + "lab"}, Zone: "ny", Plan: "c3.small.x86", IPXEScriptURL: "http://127.0.0.1:1/s", UserState: packetsim.UserStateFailed},
		{Hostname: "c", Zone: "ewr1", State: "failed"},
		{Hostname: "d", Zone: "sjc1", State: "provisioning", Userdata: "#!ipxe\nboot\n"},
		{Hostname: "e", Zone: "am", State: "inactive", Tags: []string{}},
	}
	if _, err := srv.Sim.Seed(seeds...); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, srv.APIURL+"projects/"+testProject+"/devices?include=facility&per_page=1000", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Auth-Token", testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Devices json.RawMessage `json:"devices"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	if n := sameLive(t, page.Devices); n != len(seeds) {
		t.Fatalf("page has %d devices, want %d", n, len(seeds))
	}
}

// TestLightListings: ListForPlan equals List without the addresses, and
// ListStates carries exactly what waiting reads, in as many requests as
// List (one page per 1,000 devices), validated against the API
// description.
func TestLightListings(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{ProvisionTime: time.Hour}, true, nil)
	seeds := []packetsim.SeedDevice{
		{Hostname: "a", Tags: []string{spec.TagFleet + "lab", spec.TagSlot + "g/ams1/1"}, Zone: "ams1", AlwaysPXE: true, Userdata: "#!ipxe\nboot\n", UserState: packetsim.UserStateSucceeded},
		{Hostname: "b", Tags: []string{spec.TagFleet + "lab", spec.TagSlot + "g/ny/1"}, Zone: "ny", Plan: "c3.small.x86", IPXEScriptURL: "http://127.0.0.1:1/s", UserState: packetsim.UserStateFailed},
		{Hostname: "c", Tags: []string{spec.TagFleet + "lab"}, Zone: "ewr1", State: "provisioning"},
		{Hostname: "d", Tags: []string{"foreign"}, Zone: "sjc1"},
	}
	if _, err := srv.Sim.Seed(seeds...); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	full, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := c.Stats().Requests
	forPlan, err := c.ListForPlan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	states, err := c.ListStates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Stats().Requests - before; got != 2 {
		t.Errorf("two light listings of 3 devices took %d requests, want 2", got)
	}
	if len(full) != 3 || len(forPlan) != 3 || len(states) != 3 {
		t.Fatalf("listed %d, %d, %d devices, want 3 each", len(full), len(forPlan), len(states))
	}
	for i, l := range full {
		if len(l.IPs) == 0 {
			t.Errorf("full listing of %s has no addresses", l.Hostname)
		}
		want := l
		want.IPs = nil
		if l.Network == nil {
			t.Errorf("full listing of %s has no network state", l.Hostname)
		}
		// Without addresses and ports there is no network state (why
		// fleets with network types list in full).
		want.Network = nil
		if !reflect.DeepEqual(forPlan[i], want) {
			t.Errorf("ListForPlan device %d:\n got %+v\nwant %+v", i, forPlan[i], want)
		}
		s := states[i]
		w := planner.Live{ID: l.ID, State: l.State, Tags: l.Tags,
			CreatedAt: l.CreatedAt, UserState: l.UserState, UserStateBody: l.UserStateBody, UserStateAt: l.UserStateAt, LastEvent: l.LastEvent}
		if !reflect.DeepEqual(s, w) {
			t.Errorf("ListStates device %d:\n got %+v\nwant %+v", i, s, w)
		}
	}
}

// TestListingPagesDoNotLeak: the page array is reused from page to page;
// a device on the second page whose answer lacks fields the first page's
// devices had must not inherit them.
func TestListingPagesDoNotLeak(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{ProvisionTime: time.Hour}, false, nil)
	seeds := make([]packetsim.SeedDevice, PerPage+1)
	for i := range PerPage {
		seeds[i] = packetsim.SeedDevice{Hostname: fmt.Sprintf("full-%d", i), Tags: []string{spec.TagFleet + "lab", spec.TagSlot + fmt.Sprintf("g/ams1/%d", i+1)},
			Zone: "ams1", AlwaysPXE: true, Userdata: "#!ipxe\nboot\n", IPXEScriptURL: "http://127.0.0.1:1/s", UserState: packetsim.UserStateSucceeded}
	}
	seeds[PerPage] = packetsim.SeedDevice{Hostname: "bare", Tags: []string{spec.TagFleet + "lab"}, Zone: "ewr1", State: "provisioning"}
	if _, err := srv.Sim.Seed(seeds...); err != nil {
		t.Fatal(err)
	}
	live, err := c.ListForPlan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != len(seeds) {
		t.Fatalf("listed %d devices, want %d", len(live), len(seeds))
	}
	for _, l := range live {
		if l.Hostname != "bare" {
			continue
		}
		if l.AlwaysPXE || l.Userdata != "" || l.ScriptURL != "" || l.UserState != "" || l.Slot() != "" || l.Facility != "ewr1" {
			t.Errorf("the second page's device took fields of the first page's: %+v", l)
		}
		return
	}
	t.Fatal("device bare not listed")
}

// TestCreateAnswerMapsLikeListing: the create's lean decode of its lighter
// answer (decodePage, exclude) gives the Live the fleet listing gives for
// the same device, validated against the API description.
func TestCreateAnswerMapsLikeListing(t *testing.T) {
	c, _ := startSim(t, packetsim.Config{ProvisionTime: time.Hour}, true, nil)
	ctx := context.Background()
	if _, err := c.Catalogue(ctx); err != nil {
		t.Fatal(err)
	}
	d := testDevice()
	d.IPXEScriptURL, d.Script = "http://127.0.0.1:1/s", ""
	created, err := c.Create(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	live, err := c.ListForPlan(ctx)
	if err != nil || len(live) != 1 {
		t.Fatalf("listed %d devices, %v; want the one created", len(live), err)
	}
	listed := live[0]
	if created.Machine == "" || created.Facility == "" || created.ScriptURL == "" || !created.AlwaysPXE || created.Rev() == "" {
		t.Errorf("create answer lost fields: %+v", created)
	}
	// The state moves on by itself; the rest must agree.
	created.State, listed.State = "", ""
	created.LastEvent, listed.LastEvent = "", ""
	if !reflect.DeepEqual(created, listed) {
		t.Errorf("create answer and listing differ:\n created %+v\n  listed %+v", created, listed)
	}
}

// TestEventTimeReadsLikePackngo: eventTime accepts and rejects what
// packngo.Timestamp does, with the same times.
func TestEventTimeReadsLikePackngo(t *testing.T) {
	for _, in := range []string{`"2026-01-02T03:04:05Z"`, `"2026-01-02T03:04:05.123+02:00"`, `1767323045`, `"yesterday"`, `"123"`, `true`, `""`} {
		var want packngo.Timestamp
		var got eventTime
		werr, gerr := want.UnmarshalJSON([]byte(in)), got.UnmarshalJSON([]byte(in))
		if (werr == nil) != (gerr == nil) || !got.Time.Equal(want.Time) {
			t.Errorf("%s: eventTime %v (%v), packngo %v (%v)", in, got.Time, gerr, want.Time, werr)
		}
	}
}
