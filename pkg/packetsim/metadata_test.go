package packetsim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/packethost/packngo/metadata"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// metaDo sends one request to a metadata service and returns status and body.
func metaDo(t *testing.T, method, url, host, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetadataServiceOnItsOwnListener mounts the handler as a per-device
// metadata host: the device reads itself with packngo's metadata client
// and the URLs it is told to use are the host's own.
func TestMetadataServiceOnItsOwnListener(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	key := testKey(t, "ops@lab")
	if resp := apiDo(t, srv, "POST", "/metal/v1/projects/"+testProject+"/ssh-keys", `{"label":"ops","key":`+jsonString(key)+`}`, nil); resp.StatusCode != 201 {
		t.Fatalf("add key: %d", resp.StatusCode)
	}
	d := createRaw(t, srv, createBody(`"hostname":"meta-a","tags":["a","b"],"userdata":`+jsonString(goodScript(srv))))
	var full struct {
		Facility struct{ Code string } `json:"facility"`
		IPs      []struct {
			Address string `json:"address"`
		} `json:"ip_addresses"`
	}
	apiDo(t, srv, "GET", "/metal/v1/devices/"+d.ID, "", &full)

	host := httptest.NewServer(srv.Sim.MetadataHandler(d.ID))
	defer host.Close()
	md, err := metadata.GetMetadataFromURL(host.URL)
	if err != nil {
		t.Fatal(err)
	}
	// baremetal_0 has one port (ports.go), so one interface.
	var addrs []string
	for _, a := range md.Network.Addresses {
		addrs = append(addrs, a.Address.String())
	}
	var want []string
	for _, a := range full.IPs {
		want = append(want, a.Address)
	}
	if md.ID != d.ID || md.Hostname != "meta-a" || md.Facility != full.Facility.Code || md.Plan != "baremetal_0" ||
		!slices.Equal(md.Tags, []string{"a", "b"}) || !slices.Equal(md.SSHKeys, []string{key}) || md.OS.Slug != "custom_ipxe" ||
		len(md.Network.Interfaces) != 1 || md.Network.BondingMode() != metadata.BondingLACP || !slices.Equal(addrs, want) {
		t.Fatalf("metadata %+v does not match the device (addresses %v, want %v)", md, addrs, want)
	}
	ud, err := metadata.GetUserDataFromURL(host.URL)
	if err != nil || string(ud) != goodScript(srv) {
		t.Fatalf("userdata %q %v", ud, err)
	}

	// As the guest sees it: the link-local metadata address.
	code, body := metaDo(t, "GET", host.URL+"/metadata", "169.254.169.254", "")
	var urls struct{ UserStateURL, PhoneHomeURL string }
	json.Unmarshal([]byte(strings.NewReplacer("user_state_url", "UserStateURL", "phone_home_url", "PhoneHomeURL").Replace(body)), &urls)
	if code != 200 || urls.UserStateURL != "http://169.254.169.254/events" || urls.PhoneHomeURL != "http://169.254.169.254/phone-home" {
		t.Fatalf("announced URLs %+v (status %d)", urls, code)
	}
	if code, _ := metaDo(t, "POST", host.URL+"/events", "", `{"state":"running","code":1042,"message":"init started"}`); code != http.StatusNoContent {
		t.Fatalf("post user state: %d", code)
	}
	var evs struct {
		Events []struct{ Type, State, Body string } `json:"events"`
	}
	apiDo(t, srv, "GET", "/metal/v1/devices/"+d.ID+"/events", "", &evs)
	if !slices.ContainsFunc(evs.Events, func(e struct{ Type, State, Body string }) bool {
		return e.Type == "user.1042" && e.State == "running" && e.Body == "init started"
	}) {
		t.Fatalf("events after posting user state: %+v", evs.Events)
	}
	for _, bad := range []string{`{"state":"done","code":1000}`, `{"state":"failed","code":999}`, `{"state":"failed","code":1100}`, `{`} {
		if code, _ := metaDo(t, "POST", host.URL+"/events", "", bad); code != http.StatusUnprocessableEntity {
			t.Errorf("user state %s: %d, want 422", bad, code)
		}
	}
	if code, _ := metaDo(t, "POST", host.URL+"/phone-home", "", ""); code != http.StatusNoContent {
		t.Errorf("phone home: %d", code)
	}
}

// TestMetadataServiceUnderDevicePath mounts it on the main listener.
func TestMetadataServiceUnderDevicePath(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	d := createRaw(t, srv, createBody(`"hostname":"meta-b","userdata":`+jsonString(goodScript(srv))))
	base := srv.URL + "/metadata/" + d.ID
	md, err := metadata.GetMetadataFromURL(base)
	if err != nil || md.Hostname != "meta-b" {
		t.Fatalf("metadata: %v %+v", err, md)
	}
	_, body := metaDo(t, "GET", base+"/metadata", "", "")
	if !strings.Contains(body, `"user_state_url":"`+base+`/events"`) {
		t.Fatalf("metadata does not announce %s/events: %s", base, body)
	}
	if code, _ := metaDo(t, "POST", base+"/events", "", `{"state":"succeeded","code":1099,"message":"up"}`); code != http.StatusNoContent {
		t.Fatalf("post user state: %d", code)
	}
	got, _ := getDevice(t, srv, d.ID)
	if st, msg := got.userState(); st != "succeeded" || msg != "up" {
		t.Errorf("user state after post = %q %q", st, msg)
	}
	if code, _ := metaDo(t, "GET", srv.URL+"/metadata/"+testProject+"/metadata", "", ""); code != 404 {
		t.Errorf("metadata of an unknown device: %d, want 404", code)
	}
	if code, _ := metaDo(t, "GET", base+"/nothing", "", ""); code != 404 {
		t.Errorf("unknown metadata path: %d", code)
	}
}

// guestBooter posts the guest's own user state through the URL its
// metadata announces, as an image does, and returns without a verdict.
type guestBooter struct {
	base  atomic.Pointer[string]
	posts atomic.Int32
}

func (g *guestBooter) Boot(ctx context.Context, req packetsim.BootRequest) (string, error) {
	md, err := http.Get(*g.base.Load() + "/metadata/" + req.DeviceID + "/metadata")
	if err != nil {
		return "", err
	}
	var doc struct {
		URL string `json:"user_state_url"`
	}
	json.NewDecoder(md.Body).Decode(&doc)
	md.Body.Close()
	resp, err := http.Post(doc.URL, "application/json", strings.NewReader(fmt.Sprintf(`{"state":"succeeded","code":1077,"message":"guest %s up"}`, req.Hostname)))
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	g.posts.Add(1)
	return "", nil
}

// TestGuestUserStateHasTheLastWord: a guest that posts its final state
// through the metadata service is not overridden by the simulator's own
// report.
func TestGuestUserStateHasTheLastWord(t *testing.T) {
	g := &guestBooter{}
	srv := startSim(t, packetsim.Config{ProvisionTime: 5 * time.Millisecond, Booter: g})
	g.base.Store(&srv.URL)
	d := createRaw(t, srv, createBody(`"hostname":"guest","userdata":`+jsonString(goodScript(srv))))
	waitFor(t, "the boot", 5*time.Second, func() bool { return len(srv.Sim.Boots()) == 1 })
	var evs struct {
		Events []struct{ Type, State, Body string } `json:"events"`
	}
	apiDo(t, srv, "GET", "/metal/v1/devices/"+d.ID+"/events", "", &evs)
	if g.posts.Load() != 1 || len(evs.Events) != 1 || evs.Events[0].Type != "user.1077" || evs.Events[0].Body != "guest guest up" {
		t.Fatalf("events %+v, want only the guest's user.1077", evs.Events)
	}
}
