package packet

import (
	"context"
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
	pc, err := c.api(ctx)
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
