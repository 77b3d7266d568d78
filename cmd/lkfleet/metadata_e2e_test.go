package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/packethost/packngo/metadata"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// guestImage boots like a LinuxKit image that reports for itself: it
// reads its metadata from the simulator's metadata service and posts its
// user state to the user_state_url announced there. It gives the
// simulator no verdict, so only the guest's post can end --wait booted.
type guestImage struct {
	base  atomic.Pointer[string]
	posts atomic.Int32
}

func (g *guestImage) Boot(ctx context.Context, req packetsim.BootRequest) (string, error) {
	md, err := metadata.GetMetadataFromURL(*g.base.Load() + "/metadata/" + req.DeviceID)
	if err != nil {
		return "", err
	}
	resp, err := http.Get(*g.base.Load() + "/metadata/" + req.DeviceID + "/metadata")
	if err != nil {
		return "", err
	}
	var urls struct {
		UserState string `json:"user_state_url"`
	}
	err = json.NewDecoder(resp.Body).Decode(&urls)
	resp.Body.Close()
	if err != nil {
		return "", err
	}
	body := fmt.Sprintf(`{"state":"succeeded","code":1050,"message":"%s is up"}`, md.Hostname)
	post, err := http.Post(urls.UserState, "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	post.Body.Close()
	if post.StatusCode != http.StatusNoContent {
		return "", fmt.Errorf("post user state: %s", post.Status)
	}
	g.posts.Add(1)
	return "", nil
}

// TestEndToEndMetadataAndUserState: a metro create read with
// include=project has the project id, with exclude=ip_addresses no
// addresses; the metadata service describes the device; the guest's user
// state POST is what ends --wait booted.
func TestEndToEndMetadataAndUserState(t *testing.T) {
	g := &guestImage{}
	e := newE2E(t, packetsim.Config{Booter: g})
	g.base.Store(&e.srv.URL)
	e.write(`apiVersion: lkfleet/v1
fleet: meta
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: IMAGES/v1
groups:
  - name: web
    image: sshd
    machine: c3.small.x86
    count: 1
    zones: [am]
`)
	out := e.mustRun(0, "apply", "-f", e.fleet, "--auto-approve", "--poll-interval", "20ms", "-o", "plain", "--wait", "booted")
	if !strings.Contains(out, "Apply complete: 1 added") {
		t.Fatalf("apply:\n%s", out)
	}
	devs := e.status()
	if len(devs) != 1 || devs[0].Booted != "succeeded" || g.posts.Load() != 1 {
		t.Fatalf("status %+v after %d guest posts, want one device booted by the guest's post", devs, g.posts.Load())
	}
	id := devs[0].ID

	var dev struct {
		Hostname string `json:"hostname"`
		Project  struct {
			ID   string `json:"id"`
			Href string `json:"href"`
		} `json:"project"`
		Facility struct {
			Code  string                `json:"code"`
			Metro struct{ Code string } `json:"metro"`
		} `json:"facility"`
		Tags []string `json:"tags"`
		IPs  []struct {
			Address string `json:"address"`
			Href    string `json:"href"`
		} `json:"ip_addresses"`
		Events []struct{ Type, State, Body string } `json:"provisioning_events"`
	}
	get := func(query string) {
		t.Helper()
		dev.IPs = nil
		if err := json.Unmarshal([]byte(e.device(id+query)), &dev); err != nil {
			t.Fatal(err)
		}
	}
	get("?include=project")
	if dev.Project.ID != e.srv.Sim.Project() || dev.Facility.Metro.Code != "am" || len(dev.IPs) != 3 || dev.IPs[0].Address == "" {
		t.Fatalf("include=project: project %+v, facility %+v, %d addresses", dev.Project, dev.Facility, len(dev.IPs))
	}
	if len(dev.Events) != 1 || dev.Events[0].Type != "user.1050" || dev.Events[0].Body != dev.Hostname+" is up" {
		t.Errorf("events %+v, want only the guest's user.1050", dev.Events)
	}
	var addrs []string
	for _, ip := range dev.IPs {
		addrs = append(addrs, ip.Address)
	}
	get("?exclude=ip_addresses")
	if len(dev.IPs) != 3 || dev.IPs[0].Address != "" || dev.IPs[0].Href == "" {
		t.Fatalf("exclude=ip_addresses: %+v", dev.IPs)
	}

	md, err := metadata.GetMetadataFromURL(e.srv.URL + "/metadata/" + id)
	if err != nil {
		t.Fatal(err)
	}
	var mdAddrs []string
	for _, a := range md.Network.Addresses {
		mdAddrs = append(mdAddrs, a.Address.String())
	}
	if md.ID != id || md.Hostname != dev.Hostname || md.Facility != dev.Facility.Code || md.Metro != "am" ||
		md.Plan != "c3.small.x86" || !slices.Equal(md.Tags, dev.Tags) || !slices.Equal(mdAddrs, addrs) {
		t.Errorf("metadata %+v does not match the device %+v (addresses %v)", md, dev, addrs)
	}
}
