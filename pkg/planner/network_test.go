package planner

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/network"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// networkFleet is testFleet with the web group on a network type.
func networkFleet(machine, typ string, vlans ...int) (*spec.Fleet, []spec.Device) {
	f := testFleet()
	f.Groups[0].Machine = machine
	ds := desiredOf(f)
	for i := range ds {
		if ds[i].Group == "web" {
			ds[i].NetworkType = typ
			for _, v := range vlans {
				ds[i].VLANs = append(ds[i].VLANs, spec.VLAN{VXLAN: v})
			}
		}
	}
	return f, ds
}

func TestCheckNetwork(t *testing.T) {
	cat := &Catalogue{Plans: map[string]PlanInfo{
		"c3.small.x86": {Ports: 2}, "baremetal_0": {Ports: 1}, "baremetal_1": {Ports: 2}, "x1.single": {Ports: 1}, "m3.large.x86": {Ports: 2},
	}}
	frozen := func(ds []spec.Device, st network.State) []Live {
		ls := liveAll(ds)
		for i := range ls {
			s := st
			s.Frozen = true
			ls[i].Network = &s
		}
		return ls
	}
	hybrid := network.NewState("c3.small.x86", 2)
	if steps, err := network.Plan(hybrid, network.Hybrid, nil); err == nil {
		for _, st := range steps {
			hybrid, _ = network.Apply(hybrid, st)
		}
	}
	cases := []struct {
		name    string
		machine string
		typ     string
		live    func([]spec.Device) []Live
		want    string // "" = no error
	}{
		{"changeable", "c3.small.x86", "hybrid", nil, ""},
		{"unmanaged on a fixed plan", "baremetal_0", "", nil, ""},
		{"fixed plan, its own type", "baremetal_0", "layer3", nil, ""},
		{"fixed plan", "baremetal_0", "hybrid", nil,
			`check network_type of group "web" (slot web/ams1/1 and 3 more): machine type "baremetal_0" always has network type layer3 and cannot be converted to hybrid`},
		{"always layer 3 with two ports", "baremetal_1", "layer2-bonded", nil,
			`machine type "baremetal_1" always has network type layer3 and cannot be converted to layer2-bonded`},
		{"single port from the catalogue", "x1.single", "layer2-individual", nil,
			`machine type "x1.single" has a single port`},
		{"frozen and different", "c3.small.x86", "hybrid", func(ds []spec.Device) []Live { return frozen(ds, network.NewState("c3.small.x86", 2)) },
			"check network_type of slot web/ams1/1 (device d-01): the device's network is frozen (network_frozen) and stays layer3; it cannot become hybrid"},
		{"frozen but already there", "c3.small.x86", "hybrid", func(ds []spec.Device) []Live { return frozen(ds, hybrid) }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, ds := networkFleet(c.machine, c.typ)
			in := Input{Fleet: f, Desired: ds, Catalogue: cat}
			if c.live != nil {
				in.Live = c.live(ds)
			}
			err := CheckNetwork(in)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v\nwant %s", err, c.want)
			}
			// Compute fails the same way: nothing is planned.
			if _, err := Compute(in); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Compute: %v", err)
			}
		})
	}
	// One message per group and machine type, one per frozen device.
	f, ds := networkFleet("c3.small.x86", "hybrid")
	err := CheckNetwork(Input{Fleet: f, Desired: ds, Catalogue: cat, Live: frozen(ds, network.NewState("c3.small.x86", 2))})
	if n := strings.Count(err.Error(), "\n") + 1; n != 4 {
		t.Errorf("%d messages for 4 frozen devices:\n%v", n, err)
	}
	f, ds = networkFleet("baremetal_0", "hybrid")
	if err := CheckNetwork(Input{Fleet: f, Desired: ds, Catalogue: cat}); strings.Count(err.Error(), "\n") != 0 {
		t.Errorf("fixed plan reported more than once:\n%v", err)
	}
}

// convert returns a fresh two-port device's state converted to typ.
func convert(t *testing.T, typ network.Type, vlans ...string) *network.State {
	t.Helper()
	s := network.NewState("c3.small.x86", 2)
	steps, err := network.Plan(s, typ, vlans)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range steps {
		if s, err = network.Apply(s, st); err != nil {
			t.Fatal(err)
		}
	}
	return &s
}

// A network difference is an in-place update, rendered as Terraform would.
func TestNetworkDiffs(t *testing.T) {
	vnets := []VirtualNetwork{{ID: "vn-1001", VXLAN: 1001, Metro: "am"}, {ID: "vn-ny", VXLAN: 1001, Metro: "ny"}, {ID: "vn-2", VXLAN: 1002, Metro: "am", Description: "storage"}}
	cat := &Catalogue{VirtualNetworks: vnets}
	f, ds := networkFleet("c3.small.x86", "hybrid", 1001)
	partly := convert(t, network.Hybrid, "vn-1001")
	partly.Ports[0].Bonded, partly.Ports[1].Bonded = true, true // eth0 fine
	partly.Ports[2].VLANs = nil                                 // interrupted before the assign
	halfL2i := convert(t, network.Layer2Individual, "vn-1001")
	halfL2i.Ports[2].VLANs = nil // eth1 lost its VLAN, eth0 still has it
	cases := []struct {
		name  string
		state *network.State
		typ   string
		vlans []spec.VLAN
		want  []string // rendered attribute lines, "" = no change
	}{
		{"layer3 to hybrid", convert(t, network.Layer3), "hybrid", []spec.VLAN{{VXLAN: 1001}},
			[]string{`~ network_type = "layer3" -> "hybrid"`, `~ vlans        = [] -> [1001]`}},
		{"converged", convert(t, network.Hybrid, "vn-1001"), "hybrid", []spec.VLAN{{VXLAN: 1001}}, nil},
		{"by description", convert(t, network.Layer2Bonded, "vn-2"), "layer2-bonded", []spec.VLAN{{Description: "storage"}}, nil},
		{"VLAN to be created", convert(t, network.Hybrid, "vn-1001"), "hybrid", []spec.VLAN{{VXLAN: 1001}, {VXLAN: 3000}},
			[]string{`~ vlans = [1001] -> [1001, 3000]`}},
		{"hybrid back to layer3", convert(t, network.Hybrid, "vn-1001"), "layer3", nil,
			[]string{`~ network_type = "hybrid" -> "layer3"`, `~ vlans        = [1001] -> []`}},
		{"hybrid-bonded without VLANs is layer3", convert(t, network.Layer3), "hybrid-bonded", nil, nil},
		{"interrupted conversion", partly, "hybrid", []spec.VLAN{{VXLAN: 1001}}, []string{`~ vlans = [] -> [1001]`}},
		{"right type and VLANs, one port short", halfL2i, "layer2-individual", []spec.VLAN{{VXLAN: 1001}},
			[]string{`~ network_ports = "partly converted" -> "converged"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			desired := append([]spec.Device(nil), ds...)
			for i := range desired {
				if desired[i].Group == "web" {
					desired[i].NetworkType, desired[i].VLANs = c.typ, c.vlans
				}
			}
			live := liveAll(desired)
			for i := range live {
				if live[i].Slot() == "web/ams1/1" {
					live[i].Network = c.state
				}
			}
			p, err := Compute(Input{Fleet: f, Desired: desired, Live: live, Catalogue: cat})
			if err != nil {
				t.Fatal(err)
			}
			if c.want == nil {
				if p.HasChanges() {
					t.Fatalf("changes: %+v", p.Changes)
				}
				return
			}
			if len(p.Changes) != 1 || p.Changes[0].Action != Update || p.Changes[0].Slot() != "web/ams1/1" {
				t.Fatalf("want one update of web/ams1/1, got %+v", p.Changes)
			}
			if n, o := NetworkAttrs(&p.Changes[0]); !n || o {
				t.Errorf("NetworkAttrs = %v, %v", n, o)
			}
			var b strings.Builder
			if err := RenderText(&b, p, TextOptions{}); err != nil {
				t.Fatal(err)
			}
			for _, line := range c.want {
				if !strings.Contains(b.String(), line) {
					t.Errorf("plan lacks %q:\n%s", line, b.String())
				}
			}
		})
	}
	// A create shows the network it will get.
	p, err := Compute(Input{Fleet: f, Desired: ds, Catalogue: cat})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	RenderText(&b, p, TextOptions{})
	if !strings.Contains(b.String(), `+ network_type = "hybrid"`) || !strings.Contains(b.String(), `+ vlans        = [1001]`) {
		t.Errorf("create lacks the network:\n%s", b.String())
	}
}

// Network types, VLANs and the live port state travel in saved plans.
func TestSavedPlanKeepsNetwork(t *testing.T) {
	f, ds := networkFleet("c3.small.x86", "layer2-bonded", 1001)
	ds[0].VLANs = append(ds[0].VLANs, spec.VLAN{Description: "lab"})
	live := liveAll(ds)
	live[0].Network = convert(t, network.Hybrid, "vn-1")
	live[0].Network.Frozen = false
	p, err := Compute(Input{Fleet: f, Desired: ds, Live: live, FleetFingerprint: FleetFingerprint([]byte("fleet"))})
	if err != nil || !p.HasChanges() {
		t.Fatalf("%v %+v", err, p)
	}
	var b bytes.Buffer
	if err := Save(&b, p); err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b.Bytes()); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"network_type":"layer2-bonded"`, `"vlans":[{"vxlan":1001},{"description":"lab"}]`, `"is_bond":true`} {
		if !strings.Contains(compact.String(), key) {
			t.Errorf("saved plan lacks %s", key)
		}
	}
	got, err := Load(&b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("round trip changed the plan:\n got %+v\nwant %+v", got.Changes[0], p.Changes[0])
	}
}
