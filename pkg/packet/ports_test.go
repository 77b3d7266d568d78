package packet

import (
	"context"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/network"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// The listing carries each device's ports, so the planner sees the live
// network type and network_frozen without a request per device; the
// catalogue carries each plan's port count.
func TestSimListingNetwork(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{}, true, nil)
	ctx := context.Background()
	ids, err := srv.Sim.Seed(
		packetsim.SeedDevice{Hostname: "a", Plan: "c3.small.x86", Tags: []string{spec.TagFleet + "lab", spec.TagSlot + "g/ams1/1"}},
		packetsim.SeedDevice{Hostname: "b", Plan: "c3.small.x86", Tags: []string{spec.TagFleet + "lab", spec.TagSlot + "g/ams1/2"}},
		packetsim.SeedDevice{Hostname: "c", Plan: "baremetal_0", Tags: []string{spec.TagFleet + "lab", spec.TagSlot + "g/ams1/3"}},
	)
	if err != nil {
		t.Fatal(err)
	}
	pc, release, err := c.api(ctx)
	defer release()
	if err != nil {
		t.Fatal(err)
	}
	d, _, err := pc.Devices.Get(ids[0], nil)
	if err != nil {
		t.Fatal(err)
	}
	eth1, err := d.GetPortByName("eth1")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := pc.Ports.Disbond(eth1.ID, false); err != nil {
		t.Fatal(err)
	}
	srv.Sim.SetNetworkFrozen(ids[1], true)

	live, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]network.Type{}
	for _, l := range live {
		if l.Network == nil {
			t.Fatalf("%s: no network state", l.Hostname)
		}
		got[l.Hostname] = network.Derive(*l.Network)
		if frozen := l.Network.Frozen; frozen != (l.Hostname == "b") {
			t.Errorf("%s: frozen %v", l.Hostname, frozen)
		}
	}
	if got["a"] != network.Hybrid || got["b"] != network.Layer3 || got["c"] != network.Layer3 {
		t.Errorf("derived types %v, want a hybrid, b and c layer3", got)
	}
	cat, err := c.Catalogue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cat.Plans["baremetal_0"].Ports != 1 || cat.Plans["c3.small.x86"].Ports != 2 {
		t.Errorf("ports per plan: baremetal_0 %d, c3.small.x86 %d", cat.Plans["baremetal_0"].Ports, cat.Plans["c3.small.x86"].Ports)
	}
}

// Every port call and VLAN request lkfleet makes matches the API
// description (the validating transport) and converges a device through
// every type on the simulator.
func TestSimPortSteps(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{}, true, nil)
	ctx := context.Background()
	ids, err := srv.Sim.Seed(packetsim.SeedDevice{Hostname: "a", Plan: "c3.small.x86", Zone: "ams1",
		Tags: []string{spec.TagFleet + "lab", spec.TagSlot + "g/ams1/1"}})
	if err != nil {
		t.Fatal(err)
	}
	vn, err := c.CreateVirtualNetwork(ctx, "am", spec.VLAN{VXLAN: 1001})
	if err != nil || vn.VXLAN != 1001 || vn.Metro != "am" || len(vn.Tags) != 1 || vn.Tags[0] != "lkfleet:fleet=lab" {
		t.Fatalf("create VLAN: %v %+v", err, vn)
	}
	byDesc, err := c.CreateVirtualNetwork(ctx, "am", spec.VLAN{Description: "storage"})
	if err != nil || byDesc.Description != "storage" || byDesc.VXLAN == 0 {
		t.Fatalf("create VLAN by description: %v %+v", err, byDesc)
	}
	for _, step := range []struct {
		typ   network.Type
		vlans []string
	}{
		{network.Hybrid, []string{vn.ID}}, {network.Layer2Individual, []string{vn.ID, byDesc.ID}},
		{network.Layer2Bonded, []string{byDesc.ID}}, {network.HybridBonded, []string{vn.ID}}, {network.Layer3, nil},
	} {
		for n := 0; ; n++ {
			st, metro, err := c.DeviceNetwork(ctx, ids[0])
			if err != nil || metro != "am" {
				t.Fatalf("read ports: %v (metro %q)", err, metro)
			}
			next, more, err := network.Next(st, step.typ, step.vlans)
			if err != nil || n > 20 {
				t.Fatalf("to %s: %v after %d steps", step.typ, err, n)
			}
			if !more {
				if got := network.Derive(st); got != step.typ {
					t.Errorf("converged to %s, derived %s", step.typ, got)
				}
				break
			}
			if err := c.PortStep(ctx, next); err != nil {
				t.Fatalf("to %s: %s: %v", step.typ, next, err)
			}
		}
	}
	vs, err := c.VirtualNetworks(ctx)
	if err != nil || len(vs) != 2 || vs[0].Users != 0 {
		t.Fatalf("list VLANs: %v %+v", err, vs)
	}
	for _, v := range vs {
		if err := c.DeleteVirtualNetwork(ctx, v.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteVirtualNetwork(ctx, vs[0].ID); err != nil {
		t.Errorf("deleting a deleted VLAN: %v, want success", err)
	}
	// A refused call says which port and why.
	st, _, _ := c.DeviceNetwork(ctx, ids[0])
	err = c.PortStep(ctx, network.Step{Op: network.OpDisbond, PortID: st.Ports[0].ID, Port: "bond0"})
	if err == nil || !strings.Contains(err.Error(), "port disbond bond0") || !strings.Contains(err.Error(), "422") {
		t.Errorf("refused disbond: %v", err)
	}
}
