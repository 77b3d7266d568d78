package packetsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/internal/apispec"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// TestListExclude: a listing with exclude=... answers the named nested
// objects with their href only (as the service does), the rest in full,
// and validates against the API description.
func TestListExclude(t *testing.T) {
	doc := apispec.Load(t)
	srv := startSim(t, packetsim.Config{ProvisionTime: time.Hour})
	hc := &http.Client{Transport: apispec.NewValidatingTransport(t, doc, nil)}
	c, err := packngo.NewClientWithBaseURL("lkfleet-test", testToken, hc, srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Devices.Create(&packngo.DeviceCreateRequest{
		Hostname: "web-1", Plan: "baremetal_0", Facility: []string{"ams1"}, OS: "custom_ipxe",
		ProjectID: testProject, UserData: goodScript(srv), Tags: []string{fleetTag},
	}); err != nil {
		t.Fatal(err)
	}
	get := func(query string) map[string]json.RawMessage {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.APIURL+"projects/"+testProject+"/devices?"+query, nil)
		req.Header.Set("X-Auth-Token", testToken)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var l struct{ Devices []map[string]json.RawMessage }
		if err := json.Unmarshal(body, &l); err != nil || len(l.Devices) != 1 {
			t.Fatalf("listing %s: %v %s", query, err, body)
		}
		return l.Devices[0]
	}
	full := get("per_page=10")
	light := get("per_page=10&exclude=ip_addresses,plan,operating_system,unknown&exclude=facility")
	for _, name := range []string{"plan", "facility"} {
		var obj map[string]any
		if err := json.Unmarshal(light[name], &obj); err != nil || len(obj) != 1 || obj["href"] == "" {
			t.Errorf("excluded %s = %s, want only its href", name, light[name])
		}
		if len(full[name]) <= len(light[name]) {
			t.Errorf("%s not smaller when excluded: %d vs %d bytes", name, len(light[name]), len(full[name]))
		}
	}
	var ips []map[string]any
	if err := json.Unmarshal(light["ip_addresses"], &ips); err != nil || len(ips) == 0 {
		t.Fatalf("excluded ip_addresses = %s", light["ip_addresses"])
	}
	for _, ip := range ips {
		if len(ip) != 1 || !strings.HasPrefix(ip["href"].(string), "/metal/v1/ips/") {
			t.Errorf("excluded ip = %v, want only its href", ip)
		}
	}
	if string(full["metro"]) != string(light["metro"]) || string(full["tags"]) != string(light["tags"]) {
		t.Errorf("objects not excluded changed")
	}
}
