package packetsim_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/equinix/equinix-sdk-go/services/metalv1"
	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/internal/apispec"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

const fleetTag = "lkfleet:fleet=lab"

// TestContractPackngo drives the simulator with packngo through the
// validating transport: every request and response must match the API
// description.
func TestContractPackngo(t *testing.T) {
	doc := apispec.Load(t)
	srv := startSim(t, packetsim.Config{ProvisionTime: 40 * time.Millisecond, DeprovisionTime: 40 * time.Millisecond})
	hc := &http.Client{Transport: apispec.NewValidatingTransport(t, doc, nil)}
	c, err := packngo.NewClientWithBaseURL("lkfleet-test", testToken, hc, srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}

	// Facility form, script as userdata.
	d1, _, err := c.Devices.Create(&packngo.DeviceCreateRequest{
		Hostname: "web-ams1-1", Plan: "baremetal_0", Facility: []string{"ams1"}, OS: "custom_ipxe",
		BillingCycle: "hourly", ProjectID: testProject, UserData: goodScript(srv), AlwaysPXE: true,
		Tags: []string{fleetTag, "lkfleet:slot=web/ams1/1"},
	})
	if err != nil {
		t.Fatalf("create (facility form): %v", err)
	}
	if d1.Facility == nil || d1.Facility.Code != "ams1" || d1.Facility.Metro == nil || d1.Facility.Metro.Code != "am" {
		t.Errorf("created device facility = %+v, want ams1 in metro am", d1.Facility)
	}
	if d1.State != "queued" && d1.State != "provisioning" {
		t.Errorf("new device state %q, want queued or provisioning", d1.State)
	}
	// Metro form, script by URL; an empty (non-nil) tag list.
	d2, _, err := c.Devices.Create(&packngo.DeviceCreateRequest{
		Hostname: "db-ny-1", Plan: "c3.small.x86", Metro: "ny", OS: "custom_ipxe", ProjectID: testProject,
		IPXEScriptURL: srv.URL + "/images/good.ipxe", Tags: []string{},
	})
	if err != nil {
		t.Fatalf("create (metro form): %v", err)
	}
	if d2.Metro == nil || d2.Metro.Code != "ny" {
		t.Errorf("metro form device metro = %+v, want ny", d2.Metro)
	}
	for i := range 22 {
		if _, _, err := c.Devices.Create(&packngo.DeviceCreateRequest{
			Hostname: fmt.Sprintf("bulk-%d", i), Plan: "baremetal_0", Facility: []string{"ewr1"}, OS: "custom_ipxe",
			ProjectID: testProject, UserData: goodScript(srv), Tags: []string{fleetTag},
		}); err != nil {
			t.Fatalf("create bulk-%d: %v", i, err)
		}
	}

	// Page by hand (packngo's own paging doubles /metal/v1) with a tag filter.
	var seen []string
	for page := 1; ; page++ {
		opts := (&packngo.ListOptions{Page: page, PerPage: 10}).Filter("tag", fleetTag)
		devs, _, err := c.Devices.List(testProject, opts)
		if err != nil {
			t.Fatalf("list page %d: %v", page, err)
		}
		for _, d := range devs {
			seen = append(seen, d.ID)
		}
		if len(devs) < 10 {
			break
		}
	}
	if len(seen) != 23 || slices.Contains(seen, d2.ID) || !slices.Contains(seen, d1.ID) {
		t.Errorf("tag-filtered listing has %d devices (d1 %v, d2 %v), want 23 with d1 and without d2",
			len(seen), slices.Contains(seen, d1.ID), slices.Contains(seen, d2.ID))
	}

	// Provisioning ends active and the boot posts user state succeeded.
	waitFor(t, "d1 and d2 booted", 5*time.Second, func() bool {
		a, _ := getDevice(t, srv, d1.ID)
		b, _ := getDevice(t, srv, d2.ID)
		sa, _ := a.userState()
		sb, _ := b.userState()
		return a.State == "active" && sa == "succeeded" && b.State == "active" && sb == "succeeded"
	})
	got, _, err := c.Devices.Get(d1.ID, nil)
	if err != nil || got.State != "active" {
		t.Fatalf("get d1: %v, state %q", err, got.State)
	}

	host := "web-ams1-1b"
	tags := []string{fleetTag, "lkfleet:slot=web/ams1/1", "lkfleet:rev=0123456789ab"}
	upd, _, err := c.Devices.Update(d1.ID, &packngo.DeviceUpdateRequest{Hostname: &host, Tags: &tags})
	if err != nil || upd.Hostname != host || !slices.Equal(upd.Tags, tags) {
		t.Fatalf("update: %v, got hostname %q tags %v", err, upd.Hostname, upd.Tags)
	}

	// Reboot (always_pxe) boots again.
	before := len(srv.Sim.Boots())
	if _, err := c.Devices.Reboot(d1.ID); err != nil {
		t.Fatalf("reboot: %v", err)
	}
	waitFor(t, "reboot boot", 5*time.Second, func() bool { return len(srv.Sim.Boots()) > before })
	if _, err := c.Devices.PowerOff(d1.ID); err != nil {
		t.Fatalf("power off: %v", err)
	}
	waitFor(t, "inactive", 5*time.Second, func() bool { d, _ := getDevice(t, srv, d1.ID); return d.State == "inactive" })
	if _, err := c.Devices.PowerOn(d1.ID); err != nil {
		t.Fatalf("power on: %v", err)
	}
	waitFor(t, "active after power on", 5*time.Second, func() bool { d, _ := getDevice(t, srv, d1.ID); return d.State == "active" })
	if _, err := c.Devices.Reinstall(d1.ID, &packngo.DeviceReinstallFields{OperatingSystem: "custom_ipxe"}); err != nil {
		t.Fatalf("reinstall: %v", err)
	}
	waitFor(t, "active after reinstall", 5*time.Second, func() bool { d, _ := getDevice(t, srv, d1.ID); return d.State == "active" })

	events, _, err := c.Devices.ListEvents(d1.ID, &packngo.ListOptions{Page: 1, PerPage: 50})
	if err != nil || len(events) == 0 || events[0].Type != "user.1001" || events[0].State != "succeeded" {
		t.Fatalf("events: %v, %d events (first %+v)", err, len(events), events)
	}

	if _, err := c.Devices.Delete(d1.ID, false); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if d, _, err := c.Devices.Get(d1.ID, nil); err != nil || d.State != "deprovisioning" {
		t.Fatalf("get after delete: %v, state %q, want deprovisioning", err, d.State)
	}
	waitFor(t, "404 after deprovisioning", 5*time.Second, func() bool { _, code := getDevice(t, srv, d1.ID); return code == 404 })
	_, _, err = c.Devices.Get(d1.ID, nil)
	var er *packngo.ErrorResponse
	if !errors.As(err, &er) || er.Response.StatusCode != 404 {
		t.Fatalf("get deleted device: %v, want a 404 ErrorResponse", err)
	}

	facs, _, err := c.Facilities.List(nil)
	if err != nil || !slices.ContainsFunc(facs, func(f packngo.Facility) bool { return f.Code == "sjc1" && f.Metro != nil && f.Metro.Code == "sv" }) {
		t.Fatalf("facilities: %v (%d)", err, len(facs))
	}
	metros, _, err := c.Metros.List(nil)
	if err != nil || !slices.ContainsFunc(metros, func(m packngo.Metro) bool { return m.Code == "am" }) {
		t.Fatalf("metros: %v (%d)", err, len(metros))
	}
	plans, _, err := c.Plans.List(nil)
	if err != nil || !slices.ContainsFunc(plans, func(p packngo.Plan) bool { return p.Slug == "baremetal_2a" && p.Class == "c1.large.arm" }) {
		t.Fatalf("plans: %v (%d)", err, len(plans))
	}
	report, _, err := c.CapacityService.List()
	if err != nil || (*report)["ams1"]["baremetal_0"].Level != "normal" {
		t.Fatalf("capacity: %v %+v", err, report)
	}
	if _, _, err := c.CapacityService.ListMetros(); err != nil {
		t.Fatalf("capacity per metro: %v", err)
	}
	if _, _, err := c.Projects.Get(testProject, nil); err != nil {
		t.Fatalf("project: %v", err)
	}
}

// TestContractMetalSDK drives the simulator with the generated SDK.
func TestContractMetalSDK(t *testing.T) {
	doc := apispec.Load(t)
	srv := startSim(t, packetsim.Config{ProvisionTime: 40 * time.Millisecond, DeprovisionTime: 40 * time.Millisecond, Capacity: 3})
	cfg := metalv1.NewConfiguration()
	cfg.Servers = metalv1.ServerConfigurations{{URL: srv.URL + "/metal/v1"}}
	cfg.AddDefaultHeader("X-Auth-Token", testToken)
	cfg.HTTPClient = &http.Client{Transport: apispec.NewValidatingTransport(t, doc, nil)}
	c := metalv1.NewAPIClient(cfg)
	ctx := context.Background()

	script := goodScript(srv)
	in := metalv1.DeviceCreateInMetroInput{Metro: "am", Plan: "c3.small.x86", OperatingSystem: "custom_ipxe",
		Hostname: metalv1.PtrString("sdk-am-1"), Userdata: &script, Tags: []string{fleetTag, "lkfleet:slot=sdk/am/1"}, AlwaysPxe: metalv1.PtrBool(true)}
	d1, _, err := c.DevicesApi.CreateDevice(ctx, testProject).CreateDeviceRequest(metalv1.DeviceCreateInMetroInputAsCreateDeviceRequest(&in)).Execute()
	if err != nil {
		t.Fatalf("create (metro form): %v", err)
	}
	fin := metalv1.DeviceCreateInFacilityInput{Facility: []string{"fra2"}, Plan: "baremetal_1", OperatingSystem: "custom_ipxe",
		Hostname: metalv1.PtrString("sdk-fra2-1"), IpxeScriptUrl: metalv1.PtrString(srv.URL + "/images/good.ipxe"), Tags: []string{fleetTag}}
	d2, _, err := c.DevicesApi.CreateDevice(ctx, testProject).CreateDeviceRequest(metalv1.DeviceCreateInFacilityInputAsCreateDeviceRequest(&fin)).Execute()
	if err != nil {
		t.Fatalf("create (facility form): %v", err)
	}
	if d2.Facility.GetCode() != "fra2" || d2.Metro.GetCode() != "fr" {
		t.Errorf("facility form device in %s/%s, want fra2/fr", d2.Facility.GetCode(), d2.Metro.GetCode())
	}

	// Listing across pages with a tag filter.
	var ids []string
	for page := int32(1); ; page++ {
		l, _, err := c.DevicesApi.FindProjectDevices(ctx, testProject).Tag(fleetTag).Page(page).PerPage(1).Execute()
		if err != nil {
			t.Fatalf("list page %d: %v", page, err)
		}
		for _, d := range l.Devices {
			ids = append(ids, d.GetId())
		}
		if page == 1 && (l.Meta.GetTotal() != 2 || l.Meta.Next == nil || l.Meta.Next.Href != "/metal/v1/projects/"+testProject+"/devices?page=2&per_page=1&tag=lkfleet%3Afleet%3Dlab") {
			t.Errorf("page 1 meta = total %d next %+v", l.Meta.GetTotal(), l.Meta.Next)
		}
		if l.Meta.Next == nil {
			break
		}
	}
	if !slices.Equal(ids, []string{d1.GetId(), d2.GetId()}) {
		t.Errorf("listing = %v, want [%s %s] in creation order", ids, d1.GetId(), d2.GetId())
	}

	waitFor(t, "both devices active", 5*time.Second, func() bool {
		a, _ := getDevice(t, srv, d1.GetId())
		b, _ := getDevice(t, srv, d2.GetId())
		return a.State == "active" && b.State == "active"
	})
	waitFor(t, "two boots", 5*time.Second, func() bool { return len(srv.Sim.Boots()) == 2 })

	upd := metalv1.DeviceUpdateInput{Hostname: metalv1.PtrString("sdk-am-1b"), Tags: []string{fleetTag, "x"}}
	d, _, err := c.DevicesApi.UpdateDevice(ctx, d1.GetId()).DeviceUpdateInput(upd).Execute()
	if err != nil || d.GetHostname() != "sdk-am-1b" {
		t.Fatalf("update: %v (%q)", err, d.GetHostname())
	}
	if _, err := c.DevicesApi.PerformAction(ctx, d1.GetId()).DeviceActionInput(*metalv1.NewDeviceActionInput(metalv1.DEVICEACTIONINPUTTYPE_REBOOT)).Execute(); err != nil {
		t.Fatalf("reboot: %v", err)
	}
	waitFor(t, "reboot boot", 5*time.Second, func() bool { return len(srv.Sim.Boots()) == 3 })
	if _, err := c.DevicesApi.PerformAction(ctx, d1.GetId()).DeviceActionInput(*metalv1.NewDeviceActionInput(metalv1.DEVICEACTIONINPUTTYPE_POWER_OFF)).Execute(); err != nil {
		t.Fatalf("power off: %v", err)
	}
	ev, _, err := c.EventsApi.FindDeviceEvents(ctx, d1.GetId()).Page(1).PerPage(10).Execute()
	if err != nil || len(ev.Events) != 2 || ev.Events[0].GetState() != "succeeded" {
		t.Fatalf("events: %v, %+v", err, ev)
	}
	if _, err := c.DevicesApi.DeleteDevice(ctx, d2.GetId()).ForceDelete(true).Execute(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	waitFor(t, "404 after delete", 5*time.Second, func() bool { _, code := getDevice(t, srv, d2.GetId()); return code == 404 })
	_, resp, err := c.DevicesApi.FindDeviceById(ctx, d2.GetId()).Execute()
	if err == nil || resp == nil || resp.StatusCode != 404 {
		t.Fatalf("get deleted: %v, want 404", err)
	}

	// Catalogue and capacity (3 per facility and plan here).
	if f, _, err := c.FacilitiesApi.FindFacilities(ctx).Execute(); err != nil || len(f.Facilities) < 7 {
		t.Fatalf("facilities: %v", err)
	}
	if m, _, err := c.MetrosApi.FindMetros(ctx).Execute(); err != nil || len(m.Metros) < 7 {
		t.Fatalf("metros: %v", err)
	}
	p, _, err := c.PlansApi.FindPlans(ctx).Execute()
	if err != nil || !slices.ContainsFunc(p.Plans, func(p metalv1.Plan) bool { return p.GetSlug() == "c3.large.arm64" }) {
		t.Fatalf("plans: %v", err)
	}
	if _, _, err := c.CapacityApi.FindCapacityForFacility(ctx).Execute(); err != nil {
		t.Fatalf("capacity: %v", err)
	}
	if _, _, err := c.CapacityApi.FindCapacityForMetro(ctx).Execute(); err != nil {
		t.Fatalf("capacity per metro: %v", err)
	}
	check := func(metro bool, loc, plan, qty string) bool {
		t.Helper()
		si := metalv1.ServerInfo{Plan: &plan, Quantity: &qty}
		if metro {
			si.Metro = &loc
			l, _, err := c.CapacityApi.CheckCapacityForMetro(ctx).CapacityInput(metalv1.CapacityInput{Servers: []metalv1.ServerInfo{si}}).Execute()
			if err != nil || len(l.Servers) != 1 {
				t.Fatalf("check capacity in metro %s: %v", loc, err)
			}
			return l.Servers[0].GetAvailable()
		}
		si.Facility = &loc
		l, _, err := c.CapacityApi.CheckCapacityForFacility(ctx).CapacityInput(metalv1.CapacityInput{Servers: []metalv1.ServerInfo{si}}).Execute()
		if err != nil || len(l.Servers) != 1 {
			t.Fatalf("check capacity in %s: %v", loc, err)
		}
		return l.Servers[0].GetAvailable()
	}
	if !check(false, "ams1", "baremetal_0", "3") || check(false, "ams1", "baremetal_0", "4") {
		t.Errorf("capacity check in ams1 disagrees with capacity 3")
	}
	if !check(true, "sv", "c3.small.x86", "6") || check(true, "sv", "c3.small.x86", "7") {
		t.Errorf("capacity check in metro sv (two facilities) disagrees with capacity 3 each")
	}
	// Fill ams1 with baremetal_0; the fourth create fails like the service.
	for i := range 4 {
		fin := metalv1.DeviceCreateInFacilityInput{Facility: []string{"ams1"}, Plan: "baremetal_0", OperatingSystem: "custom_ipxe",
			IpxeScriptUrl: metalv1.PtrString(srv.URL + "/images/good.ipxe"), Tags: []string{}}
		_, resp, err := c.DevicesApi.CreateDevice(ctx, testProject).CreateDeviceRequest(metalv1.DeviceCreateInFacilityInputAsCreateDeviceRequest(&fin)).Execute()
		if i < 3 && err != nil {
			t.Fatalf("create %d in ams1: %v", i, err)
		}
		if i == 3 && (err == nil || resp.StatusCode != http.StatusServiceUnavailable) {
			t.Fatalf("create beyond capacity: %v, want 503", err)
		}
	}
	if check(false, "ams1", "baremetal_0", "1") {
		t.Errorf("capacity check says ams1 has room after filling it")
	}
	if _, _, err := c.ProjectsApi.FindProjectById(ctx, testProject).Execute(); err != nil {
		t.Fatalf("project: %v", err)
	}
	batch := metalv1.InstancesBatchCreateInput{Batches: []metalv1.InstancesBatchCreateInputBatchesInner{{
		Hostnames: []string{"b-1", "b-2"}, Quantity: metalv1.PtrInt32(2),
		Metro: "da", Plan: "c3.small.x86", OperatingSystem: "custom_ipxe", Userdata: &script, Tags: []string{},
	}}}
	bl, _, err := c.BatchesApi.CreateDeviceBatch(ctx, testProject).InstancesBatchCreateInput(batch).Execute()
	if err != nil || len(bl.Batches) != 1 || len(bl.Batches[0].Devices) != 2 {
		t.Fatalf("batch: %v %+v", err, bl)
	}
}
