package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/equinix/equinix-sdk-go/services/metalv1"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// A group on a machine type that cannot change its network fails the plan
// before anything is created, with the group, its slots and the reason.
func TestPlanRefusesNetworkTypeOfFixedPlan(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	e.write(`apiVersion: lkfleet/v1
fleet: e2e
project: ${PACKET_PROJECT_ID}
images:
  sshd: {base_url: IMAGES/v1}
groups:
  - name: lab
    image: sshd
    machine: baremetal_0
    network_type: hybrid
    vlans: [1001]
`)
	_, errs, code := e.run("plan", "-f", e.fleet)
	want := `check network_type of group "lab" (slot lab/ams1/1): machine type "baremetal_0" always has network type layer3 and cannot be converted to hybrid`
	if code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("plan: exit %d, stderr:\n%s\nwant %s", code, errs, want)
	}
	if _, errs, code := e.run("apply", "-f", e.fleet, "--auto-approve"); code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("apply: exit %d, stderr:\n%s", code, errs)
	}
	if n := e.srv.Sim.Stats().Creates; n != 0 {
		t.Errorf("%d devices created", n)
	}
}

const netFleet = `apiVersion: lkfleet/v1
fleet: e2e
project: ${PACKET_PROJECT_ID}
images:
  sshd: {base_url: IMAGES/v1}
defaults:
  machine: c3.small.x86
  zone: ams1
groups:
  - name: plain
    image: sshd
    network_type: layer3
  - name: lab
    image: sshd
    network_type: %s
    vlans: %s
  - name: routers
    image: sshd
    network_type: layer2-bonded
    vlans: [1002]
`

// sdkPorts reads a device's ports with the generated SDK: what any other
// client of the API sees.
func sdkTypes(t *testing.T, e *e2e) map[string]string {
	t.Helper()
	cfg := metalv1.NewConfiguration()
	cfg.Servers = metalv1.ServerConfigurations{{URL: strings.TrimSuffix(e.srv.APIURL, "/")}}
	cfg.AddDefaultHeader("X-Auth-Token", e2eToken)
	c := metalv1.NewAPIClient(cfg)
	l, _, err := c.DevicesApi.FindProjectDevices(context.Background(), e.srv.Sim.Project()).PerPage(100).Execute()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range l.Devices {
		var types []string
		for _, p := range d.NetworkPorts {
			vl := []string{}
			for _, v := range p.VirtualNetworks {
				vl = append(vl, path.Base(v.GetHref()))
			}
			types = append(types, fmt.Sprintf("%s:%s:%v:%d", p.GetName(), p.GetNetworkType(), p.Data.GetBonded(), len(vl)))
		}
		out[d.GetHostname()] = strings.Join(types, " ")
	}
	return out
}

// The story end to end on the simulator: three network types
// apply, the SDK sees them, the next plan is clean; a type change is an
// in-place update that converges; an interrupted conversion is finished
// by the next apply; a foreign device's ports are never touched.
func TestNetworkTypesEndToEnd(t *testing.T) {
	e := newE2E(t, packetsim.Config{})
	foreign, err := e.srv.Sim.Seed(packetsim.SeedDevice{Hostname: "other", Plan: "c3.small.x86", Tags: []string{"team:other"}})
	if err != nil {
		t.Fatal(err)
	}
	foreignBefore := e.device(foreign[0])

	e.write(fmt.Sprintf(netFleet, "hybrid", "[1001]"))
	out := e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	for _, want := range []string{`+ network_type = "hybrid"`, `+ vlans        = [1001]`, `+ network_type = "layer2-bonded"`} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve")
	types := sdkTypes(t, e)
	want := map[string]string{
		"plain-ams1-1":   "bond0:layer3:true:0 eth0:layer3:true:0 eth1:layer3:true:0",
		"lab-ams1-1":     "bond0:hybrid:true:0 eth0:hybrid:true:0 eth1:hybrid:false:1",
		"routers-ams1-1": "bond0:layer2-bonded:true:1 eth0:layer2-bonded:true:0 eth1:layer2-bonded:true:0",
		"other":          "bond0:layer3:true:0 eth0:layer3:true:0 eth1:layer3:true:0",
	}
	for h, w := range want {
		if types[h] != w {
			t.Errorf("%s ports: %s\nwant %s", h, types[h], w)
		}
	}
	if out := e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode"); !strings.Contains(out, "No changes") {
		t.Errorf("plan after apply:\n%s", out)
	}

	// hybrid -> layer2-individual with a second VLAN: an in-place update.
	e.write(fmt.Sprintf(netFleet, "layer2-individual", "[1001, 1003]"))
	out = e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	for _, w := range []string{`~ network_type = "hybrid" -> "layer2-individual"`, `~ vlans        = [1001] -> [1001, 1003]`, "0 to add, 0 to rebuild, 1 to change, 0 to destroy"} {
		if !strings.Contains(out, w) {
			t.Errorf("plan lacks %q:\n%s", w, out)
		}
	}
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve")
	if got := sdkTypes(t, e)["lab-ams1-1"]; got != "bond0:layer2-individual:false:0 eth0:layer2-individual:false:2 eth1:layer2-individual:false:2" {
		t.Errorf("lab after the change: %s", got)
	}
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")

	// An interrupted conversion back to layer3: only the first steps ran.
	e.write(fmt.Sprintf(netFleet, "layer3", "[]"))
	lab := deviceID(t, e, "lab-ams1-1")
	e.portCall(lab, "eth0", "unassign", `{"vnid":"1001"}`)
	e.portCall(lab, "eth0", "unassign", `{"vnid":"1003"}`)
	e.portCall(lab, "eth0", "bond", "")
	out = e.mustRun(2, "plan", "-f", e.fleet, "--detailed-exitcode")
	if !strings.Contains(out, `~ network_type = "layer2-individual" -> "layer3"`) {
		t.Errorf("plan of the interrupted conversion:\n%s", out)
	}
	e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve")
	if got := sdkTypes(t, e)["lab-ams1-1"]; got != want["plain-ams1-1"] {
		t.Errorf("lab after finishing the conversion: %s", got)
	}
	e.mustRun(0, "plan", "-f", e.fleet, "--detailed-exitcode")

	// The VLANs the fleet needed were created once each, in the devices'
	// metro, tagged as the fleet's.
	var vl struct {
		VirtualNetworks []struct {
			VXLAN     int      `json:"vxlan"`
			MetroCode string   `json:"metro_code"`
			Tags      []string `json:"tags"`
		} `json:"virtual_networks"`
	}
	req, _ := http.NewRequest("GET", e.srv.APIURL+"projects/"+e.srv.Sim.Project()+"/virtual-networks", nil)
	req.Header.Set("X-Auth-Token", e2eToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&vl)
	resp.Body.Close()
	var got []string
	for _, v := range vl.VirtualNetworks {
		got = append(got, fmt.Sprintf("%d@%s%v", v.VXLAN, v.MetroCode, v.Tags))
	}
	slices.Sort(got)
	if strings.Join(got, " ") != "1001@am[lkfleet:fleet=e2e] 1002@am[lkfleet:fleet=e2e] 1003@am[lkfleet:fleet=e2e]" {
		t.Errorf("VLANs: %v", got)
	}
	if after := e.device(foreign[0]); after != foreignBefore {
		t.Errorf("the foreign device changed:\n%s\n%s", foreignBefore, after)
	}
	if st := e.srv.Sim.Stats(); st.Duplicates != 0 {
		t.Errorf("%d duplicates", st.Duplicates)
	}

	// destroy deletes the fleet's VLANs, not one made by someone else.
	req, _ = http.NewRequest("POST", e.srv.APIURL+"projects/"+e.srv.Sim.Project()+"/virtual-networks", strings.NewReader(`{"metro":"am","vxlan":1999}`))
	req.Header.Set("X-Auth-Token", e2eToken)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create a foreign VLAN: %v", err)
	}
	_, errs, code := e.run("destroy", "-f", e.fleet, "--auto-approve")
	if code != 0 || !strings.Contains(errs, "Deleted VLAN 1001 (metro am), created by fleet e2e.") {
		t.Fatalf("destroy: exit %d\n%s", code, errs)
	}
	req, _ = http.NewRequest("GET", e.srv.APIURL+"projects/"+e.srv.Sim.Project()+"/virtual-networks", nil)
	req.Header.Set("X-Auth-Token", e2eToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	vl.VirtualNetworks = nil
	json.NewDecoder(resp.Body).Decode(&vl)
	resp.Body.Close()
	if len(vl.VirtualNetworks) != 1 || vl.VirtualNetworks[0].VXLAN != 1999 {
		t.Errorf("VLANs after destroy: %+v", vl.VirtualNetworks)
	}
}

func deviceID(t *testing.T, e *e2e, hostname string) string {
	t.Helper()
	for _, d := range e.status() {
		if d.Hostname == hostname {
			return d.ID
		}
	}
	t.Fatalf("no device %s", hostname)
	return ""
}

// portCall makes one port call by hand, as another client would.
func (e *e2e) portCall(deviceID, port, call, body string) {
	e.t.Helper()
	var d struct {
		Ports []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"network_ports"`
	}
	if err := json.Unmarshal([]byte(e.device(deviceID)), &d); err != nil {
		e.t.Fatal(err)
	}
	for _, p := range d.Ports {
		if p.Name != port {
			continue
		}
		req, err := http.NewRequest("POST", e.srv.APIURL+"ports/"+p.ID+"/"+call, strings.NewReader(body))
		if err != nil {
			e.t.Fatal(err)
		}
		req.Header.Set("X-Auth-Token", e2eToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			e.t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			e.t.Fatalf("%s %s: %d", call, port, resp.StatusCode)
		}
		return
	}
	e.t.Fatalf("device %s has no port %s", deviceID, port)
}
