package packetsim_test

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/equinix/equinix-sdk-go/services/metalv1"
	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/internal/apispec"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

func status(err error) int {
	var er *packngo.ErrorResponse
	if errors.As(err, &er) && er.Response != nil {
		return er.Response.StatusCode
	}
	return 0
}

func portByName(t *testing.T, d *packngo.Device, name string) *packngo.Port {
	t.Helper()
	p, err := d.GetPortByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPortsPackngo walks a device through every network type with packngo
// (which sends bulk_enable in a JSON body) through the validating
// transport, and checks the type packngo derives and the refusals.
func TestPortsPackngo(t *testing.T) {
	doc := apispec.Load(t)
	// Long enough that the create and the refused disbond below both land
	// while the device provisions, even on a loaded machine under -race.
	srv := startSim(t, packetsim.Config{ProvisionTime: time.Second})
	hc := &http.Client{Transport: apispec.NewValidatingTransport(t, doc, nil)}
	c, err := packngo.NewClientWithBaseURL("lkfleet-test", testToken, hc, srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	// packngo's native-vlan (vnid in a body, not the query) and
	// convert/layer-2 (no body) requests differ from the description; the
	// service accepts them and so does the simulator. They go through a
	// plain client; the SDK test validates the same routes both ways.
	loose, err := packngo.NewClientWithBaseURL("lkfleet-test", testToken, http.DefaultClient, srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	create := func(plan, metro string) *packngo.Device {
		d, _, err := c.Devices.Create(&packngo.DeviceCreateRequest{Hostname: "n-" + plan, Plan: plan, Metro: metro,
			OS: "custom_ipxe", ProjectID: testProject, IPXEScriptURL: srv.URL + "/images/good.ipxe", Tags: []string{}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	dev := create("c3.small.x86", "am")
	if len(dev.NetworkPorts) != 3 || dev.GetNetworkType() != packngo.NetworkTypeL3 {
		t.Fatalf("new device: %d ports, type %s; want bond0+eth0+eth1 in layer3", len(dev.NetworkPorts), dev.GetNetworkType())
	}
	// Not yet active: the service refuses network changes.
	if _, _, err := c.Ports.Disbond(portByName(t, dev, "eth1").ID, false); status(err) != 422 {
		t.Errorf("disbond while provisioning: %v, want 422", err)
	}
	waitFor(t, "active", 5*time.Second, func() bool { d, _ := getDevice(t, srv, dev.ID); return d.State == "active" })
	get := func() *packngo.Device {
		d, _, err := c.Devices.Get(dev.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	bond0, eth0, eth1 := portByName(t, dev, "bond0"), portByName(t, dev, "eth0"), portByName(t, dev, "eth1")
	if eth0.Bond == nil || eth0.Bond.ID != bond0.ID || eth0.Data.MAC == "" || bond0.Type != "NetworkBondPort" {
		t.Errorf("ports: bond0 %+v eth0 %+v", bond0, eth0)
	}

	vlan, _, err := c.ProjectVirtualNetworks.Create(&packngo.VirtualNetworkCreateRequest{ProjectID: testProject, Metro: "am", VXLAN: 1001, Description: "lab"})
	if err != nil || vlan.VXLAN != 1001 || vlan.MetroCode != "am" {
		t.Fatalf("create vlan: %v %+v", err, vlan)
	}
	if _, _, err := c.ProjectVirtualNetworks.Create(&packngo.VirtualNetworkCreateRequest{ProjectID: testProject, Metro: "am", VXLAN: 1001}); status(err) != 422 {
		t.Errorf("duplicate vxlan: %v, want 422", err)
	}
	auto, _, err := c.ProjectVirtualNetworks.Create(&packngo.VirtualNetworkCreateRequest{ProjectID: testProject, Metro: "ny"})
	if err != nil || auto.VXLAN != 1000 {
		t.Fatalf("vlan with the next free vxlan: %v %+v", err, auto)
	}

	// layer3 -> hybrid: eth1 out of the bond, the VLAN on it.
	if _, _, err := c.Ports.Disbond(bond0.ID, false); status(err) != 422 {
		t.Errorf("disbond a layer 3 bond: %v, want 422", err)
	}
	if _, _, err := c.Ports.Assign(eth1.ID, vlan.ID); status(err) != 422 {
		t.Errorf("assign to a bonded port: %v, want 422", err)
	}
	if _, _, err := c.Ports.Assign(eth1.ID, auto.ID); status(err) != 422 {
		t.Errorf("assign a VLAN of another metro: %v, want 422", err)
	}
	if _, _, err := c.Ports.Disbond(eth1.ID, false); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Ports.Disbond(eth0.ID, false); status(err) != 422 {
		t.Errorf("disbond the last member of a layer 3 bond: %v, want 422", err)
	}
	p, _, err := c.Ports.Assign(eth1.ID, vlan.ID)
	if err != nil || len(p.AttachedVirtualNetworks) != 1 || p.AttachedVirtualNetworks[0].Href != "/metal/v1/virtual-networks/"+vlan.ID {
		t.Fatalf("assign: %v %+v", err, p)
	}
	if typ := get().GetNetworkType(); typ != packngo.NetworkTypeHybrid {
		t.Errorf("after disbond+assign: %s, want hybrid", typ)
	}
	// Native VLAN (packngo sends vnid in a body).
	if p, _, err = loose.Ports.AssignNative(eth1.ID, vlan.ID); err != nil || p.NativeVirtualNetwork == nil {
		t.Fatalf("native vlan: %v %+v", err, p)
	}
	if _, _, err := c.Ports.Unassign(eth1.ID, vlan.ID); status(err) != 422 {
		t.Errorf("unassign the native VLAN: %v, want 422", err)
	}
	if _, _, err := c.Ports.UnassignNative(eth1.ID); err != nil {
		t.Fatal(err)
	}
	// A VLAN on a port is in use.
	if _, err := c.ProjectVirtualNetworks.Delete(vlan.ID); status(err) != 422 {
		t.Errorf("delete a VLAN in use: %v, want 422", err)
	}
	// Unassign before a re-bond.
	if _, _, err := c.Ports.Bond(eth1.ID, false); status(err) != 422 {
		t.Errorf("bond a port with VLANs: %v, want 422", err)
	}
	if _, _, err := c.Ports.Unassign(eth1.ID, vlan.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Ports.Bond(eth0.ID, true); err != nil { // bulk: both
		t.Fatal(err)
	}
	if typ := get().GetNetworkType(); typ != packngo.NetworkTypeL3 {
		t.Errorf("after bulk bond: %s, want layer3", typ)
	}

	// layer3 -> layer2-bonded: no addresses any more; convert back refuses VLANs.
	if _, _, err := loose.Ports.ConvertToLayerTwo(eth0.ID); status(err) != 422 {
		t.Errorf("convert a physical port: %v, want 422", err)
	}
	if _, _, err := loose.Ports.ConvertToLayerTwo(bond0.ID); err != nil {
		t.Fatal(err)
	}
	d := get()
	if d.GetNetworkType() != packngo.NetworkTypeL2Bonded || len(d.Network) != 0 {
		t.Errorf("layer 2: type %s, %d addresses; want layer2-bonded without addresses", d.GetNetworkType(), len(d.Network))
	}
	if _, _, err := c.Ports.Assign(bond0.ID, "1001"); err == nil {
		t.Errorf("packngo accepted a VXLAN where it validates a UUID")
	}
	if _, _, err := c.Ports.Assign(bond0.ID, vlan.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Ports.ConvertToLayerThree(bond0.ID, []packngo.AddressRequest{{AddressFamily: 4, Public: true}}); status(err) != 422 {
		t.Errorf("convert to layer 3 with VLANs: %v, want 422", err)
	}
	// layer2-bonded -> layer2-individual (bulk disbond), then back to layer3.
	if _, _, err := c.Ports.Unassign(bond0.ID, vlan.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Ports.Disbond(bond0.ID, true); err != nil {
		t.Fatal(err)
	}
	if typ := get().GetNetworkType(); typ != packngo.NetworkTypeL2Individual {
		t.Errorf("after disbond in layer 2: %s, want layer2-individual", typ)
	}
	if _, _, err := c.Ports.ConvertToLayerThree(bond0.ID, []packngo.AddressRequest{}); status(err) != 422 {
		t.Errorf("convert a down bond: %v, want 422", err)
	}
	if _, _, err := c.Ports.Bond(bond0.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Ports.ConvertToLayerThree(bond0.ID, []packngo.AddressRequest{}); err != nil {
		t.Fatal(err)
	}
	if d := get(); d.GetNetworkType() != packngo.NetworkTypeL3 || len(d.Network) != 3 {
		t.Errorf("back in layer 3: %s with %d addresses", d.GetNetworkType(), len(d.Network))
	}
	if _, err := c.ProjectVirtualNetworks.Delete(vlan.ID); err != nil {
		t.Fatalf("delete unused vlan: %v", err)
	}
	if _, _, err := c.ProjectVirtualNetworks.Get(vlan.ID, nil); status(err) != 404 {
		t.Errorf("get deleted vlan: %v, want 404", err)
	}

	// Frozen networks and fixed plans refuse everything but reads.
	if !srv.Sim.SetNetworkFrozen(dev.ID, true) {
		t.Fatal("freeze")
	}
	var raw struct {
		NetworkFrozen bool `json:"network_frozen"`
	}
	apiDo(t, srv, "GET", "/metal/v1/devices/"+dev.ID, "", &raw)
	if !raw.NetworkFrozen {
		t.Error("network_frozen not shown")
	}
	if _, _, err := c.Ports.Disbond(eth1.ID, false); status(err) != 422 {
		t.Errorf("disbond on a frozen network: %v, want 422", err)
	}
	small := create("baremetal_0", "am")
	if len(small.NetworkPorts) != 2 {
		t.Errorf("baremetal_0 has %d ports, want bond0 and eth0", len(small.NetworkPorts))
	}
	waitFor(t, "small active", 5*time.Second, func() bool { d, _ := getDevice(t, srv, small.ID); return d.State == "active" })
	if _, _, err := loose.Ports.ConvertToLayerTwo(portByName(t, small, "bond0").ID); status(err) != 422 {
		t.Errorf("convert baremetal_0: %v, want 422", err)
	}
	if p, _, err := c.Ports.Get(portByName(t, small, "eth0").ID, nil); err != nil || p.Name != "eth0" || !p.Data.Bonded {
		t.Errorf("get port: %v %+v", err, p)
	}
	if _, _, err := c.Ports.Get("3f0b3d8e-4d5c-4a8b-9c1e-3a7f6b2d1e90", nil); status(err) != 404 {
		t.Errorf("unknown port: %v, want 404", err)
	}
	list, _, err := c.ProjectVirtualNetworks.List(testProject, nil)
	if err != nil || len(list.VirtualNetworks) != 1 || list.VirtualNetworks[0].MetroCode != "ny" {
		t.Errorf("list vlans: %v %+v", err, list)
	}
}

// TestPortsMetalSDK converts with the generated SDK: query-parameter
// bulk_enable, VXLAN numbers as vnid, include=virtual_networks.
func TestPortsMetalSDK(t *testing.T) {
	doc := apispec.Load(t)
	srv := startSim(t, packetsim.Config{})
	cfg := metalv1.NewConfiguration()
	cfg.Servers = metalv1.ServerConfigurations{{URL: srv.URL + "/metal/v1"}}
	cfg.AddDefaultHeader("X-Auth-Token", testToken)
	cfg.HTTPClient = &http.Client{Transport: apispec.NewValidatingTransport(t, doc, nil)}
	c := metalv1.NewAPIClient(cfg)
	ctx := context.Background()

	in := metalv1.DeviceCreateInMetroInput{Metro: "ny", Plan: "m3.small.x86", OperatingSystem: "custom_ipxe",
		Hostname: metalv1.PtrString("sdk-ny-1"), IpxeScriptUrl: metalv1.PtrString(srv.URL + "/images/good.ipxe"), Tags: []string{}}
	d, _, err := c.DevicesApi.CreateDevice(ctx, testProject).CreateDeviceRequest(metalv1.DeviceCreateInMetroInputAsCreateDeviceRequest(&in)).Execute()
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "active", 5*time.Second, func() bool { g, _ := getDevice(t, srv, d.GetId()); return g.State == "active" })
	ports := map[string]string{}
	for _, p := range d.NetworkPorts {
		ports[p.GetName()] = p.GetId()
	}
	if d.GetBondingMode() != 4 || len(ports) != 3 {
		t.Fatalf("device: bonding_mode %d, ports %v", d.GetBondingMode(), ports)
	}
	vl, _, err := c.VLANsApi.CreateVirtualNetwork(ctx, testProject).VirtualNetworkCreateInput(metalv1.VirtualNetworkCreateInput{
		Metro: metalv1.PtrString("ny"), Vxlan: metalv1.PtrInt32(1200), Tags: []string{"lkfleet:fleet=lab"}}).Execute()
	if err != nil || vl.GetVxlan() != 1200 {
		t.Fatalf("create vlan: %v", err)
	}
	// Hybrid with the SDK; assign by VXLAN number.
	if _, _, err := c.PortsApi.DisbondPort(ctx, ports["eth1"]).BulkDisable(false).Execute(); err != nil {
		t.Fatal(err)
	}
	p, _, err := c.PortsApi.AssignPort(ctx, ports["eth1"]).PortAssignInput(metalv1.PortAssignInput{Vnid: metalv1.PtrString("1200")}).
		Include([]string{"virtual_networks"}).Execute()
	if err != nil || len(p.VirtualNetworks) != 1 || p.VirtualNetworks[0].GetVxlan() != 1200 {
		t.Fatalf("assign by vxlan: %v %+v", err, p)
	}
	if p.GetNetworkType() != metalv1.PORTNETWORKTYPE_HYBRID {
		t.Errorf("port network_type %s, want hybrid", p.GetNetworkType())
	}
	// Native VLAN with the spec's query parameter.
	if _, _, err := c.PortsApi.AssignNativeVlan(ctx, ports["eth1"]).Vnid(vl.GetId()).Execute(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.PortsApi.DeleteNativeVlan(ctx, ports["eth1"]).Execute(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.PortsApi.UnassignPort(ctx, ports["eth1"]).PortAssignInput(metalv1.PortAssignInput{Vnid: metalv1.PtrString(vl.GetId())}).Execute(); err != nil {
		t.Fatal(err)
	}
	// bulk_enable as a query parameter bonds both ports.
	if p, _, err = c.PortsApi.BondPort(ctx, ports["bond0"]).BulkEnable(true).Execute(); err != nil || !p.Data.GetBonded() {
		t.Fatalf("bond: %v", err)
	}
	if _, _, err := c.PortsApi.ConvertLayer2(ctx, ports["bond0"]).PortAssignInput(metalv1.PortAssignInput{}).Execute(); err != nil {
		t.Fatal(err)
	}
	l3 := metalv1.PortConvertLayer3Input{RequestIps: []metalv1.PortConvertLayer3InputRequestIpsInner{{AddressFamily: metalv1.PtrInt32(4), Public: metalv1.PtrBool(true)}}}
	if _, _, err := c.PortsApi.AssignPort(ctx, ports["bond0"]).PortAssignInput(metalv1.PortAssignInput{Vnid: metalv1.PtrString("1200")}).Execute(); err != nil {
		t.Fatal(err)
	}
	got, _, err := c.DevicesApi.FindDeviceById(ctx, d.GetId()).Execute()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range got.NetworkPorts {
		if p.GetNetworkType() != metalv1.PORTNETWORKTYPE_LAYER2_BONDED {
			t.Errorf("%s: network_type %s, want layer2-bonded", p.GetName(), p.GetNetworkType())
		}
	}
	if len(got.IpAddresses) != 0 {
		t.Errorf("layer 2 device has %d addresses", len(got.IpAddresses))
	}
	_, resp, err := c.PortsApi.ConvertLayer3(ctx, ports["bond0"]).PortConvertLayer3Input(l3).Execute()
	if err == nil || resp.StatusCode != 422 {
		t.Errorf("convert to layer 3 with a VLAN: %v, want 422", err)
	}
	list, _, err := c.VLANsApi.FindVirtualNetworks(ctx, testProject).Metro("ny").Execute()
	if err != nil || len(list.VirtualNetworks) != 1 || len(list.VirtualNetworks[0].Instances) != 1 {
		t.Fatalf("list vlans: %v %+v", err, list)
	}
	if resp, err = c.VLANsApi.DeleteVirtualNetwork(ctx, vl.GetId()).Execute(); err == nil || resp.StatusCode != 422 {
		t.Errorf("delete a VLAN in use: %v, want 422", err)
	}
	if _, _, err := c.PortsApi.UnassignPort(ctx, ports["bond0"]).PortAssignInput(metalv1.PortAssignInput{Vnid: metalv1.PtrString("1200")}).Execute(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.PortsApi.ConvertLayer3(ctx, ports["bond0"]).PortConvertLayer3Input(l3).Execute(); err != nil {
		t.Fatal(err)
	}
	g, _, err := c.VLANsApi.GetVirtualNetwork(ctx, vl.GetId()).Execute()
	if err != nil || len(g.Instances) != 0 || !slices.Equal(g.Tags, []string{"lkfleet:fleet=lab"}) {
		t.Fatalf("get vlan: %v %+v", err, g)
	}
	if _, err := c.VLANsApi.DeleteVirtualNetwork(ctx, vl.GetId()).Execute(); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if p, _, err := c.PortsApi.FindPortById(ctx, ports["eth0"]).Execute(); err != nil || p.GetNetworkType() != metalv1.PORTNETWORKTYPE_LAYER3 {
		t.Fatalf("final port: %v", err)
	}
}

// Port state and VLANs survive a restart with --state.
func TestPortsStateFile(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	cfg := packetsim.Config{StateFile: state, SaveDelay: time.Millisecond, Token: testToken, Project: testProject, Quiet: true}
	srv, err := packetsim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := srv.Sim.Seed(packetsim.SeedDevice{Hostname: "a", Plan: "c3.small.x86", Zone: "ams1"})
	if err != nil {
		t.Fatal(err)
	}
	var vn struct {
		ID string `json:"id"`
	}
	apiDo(t, srv, "POST", "/metal/v1/projects/"+testProject+"/virtual-networks", `{"metro":"am","vxlan":1001}`, &vn)
	var d struct {
		Ports []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"network_ports"`
	}
	apiDo(t, srv, "GET", "/metal/v1/devices/"+ids[0], "", &d)
	eth1 := d.Ports[2].ID
	if r := apiDo(t, srv, "POST", "/metal/v1/ports/"+eth1+"/disbond", "", nil); r.StatusCode != 200 {
		t.Fatalf("disbond: %d", r.StatusCode)
	}
	if r := apiDo(t, srv, "POST", "/metal/v1/ports/"+eth1+"/assign", `{"vnid":"1001"}`, nil); r.StatusCode != 200 {
		t.Fatalf("assign: %d", r.StatusCode)
	}
	srv.Sim.SetNetworkFrozen(ids[0], true)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv2, err := packetsim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	var p struct {
		NetworkType string `json:"network_type"`
		Data        struct {
			Bonded bool `json:"bonded"`
		} `json:"data"`
		VirtualNetworks []struct {
			Href string `json:"href"`
		} `json:"virtual_networks"`
	}
	apiDo(t, srv2, "GET", "/metal/v1/ports/"+eth1, "", &p)
	if p.NetworkType != "hybrid" || p.Data.Bonded || len(p.VirtualNetworks) != 1 || p.VirtualNetworks[0].Href != "/metal/v1/virtual-networks/"+vn.ID {
		t.Errorf("eth1 after restart: %+v", p)
	}
	var frozen struct {
		NetworkFrozen bool `json:"network_frozen"`
	}
	apiDo(t, srv2, "GET", "/metal/v1/devices/"+ids[0], "", &frozen)
	if r := apiDo(t, srv2, "GET", "/metal/v1/virtual-networks/"+vn.ID, "", nil); r.StatusCode != 200 || !frozen.NetworkFrozen {
		t.Errorf("VLAN after restart: %d, frozen %v", r.StatusCode, frozen.NetworkFrozen)
	}
}
