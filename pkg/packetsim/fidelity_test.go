package packetsim_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/equinix/equinix-sdk-go/services/metalv1"
	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/internal/apispec"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// testKey returns a fresh ed25519 public key in authorized_keys form.
func testKey(t *testing.T, comment string) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	var blob []byte
	for _, part := range [][]byte{[]byte("ssh-ed25519"), pub} {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(part)))
		blob = append(blob, part...)
	}
	return "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " " + comment
}

// TestContractFidelityPackngo drives the routes and parameters real
// clients use beyond lkfleet's own with packngo, every exchange validated.
func TestContractFidelityPackngo(t *testing.T) {
	doc := apispec.Load(t)
	srv := startSim(t, packetsim.Config{ProvisionTime: 20 * time.Millisecond})
	hc := &http.Client{Transport: apispec.NewValidatingTransport(t, doc, nil)}
	c, err := packngo.NewClientWithBaseURL("lkfleet-test", testToken, hc, srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t, "alice@lab")
	k, _, err := c.SSHKeys.Create(&packngo.SSHKeyCreateRequest{Label: "alice", Key: key, ProjectID: testProject})
	if err != nil || k.Key != key || k.FingerPrint == "" {
		t.Fatalf("create project key: %v %+v", err, k)
	}
	if _, _, err := c.SSHKeys.Create(&packngo.SSHKeyCreateRequest{Label: "bad", Key: "ssh-ed25519 notbase64", ProjectID: testProject}); err == nil {
		t.Errorf("a malformed key was accepted")
	}
	keys, _, err := c.SSHKeys.ProjectList(testProject)
	if err != nil || len(keys) != 1 || keys[0].Key != key {
		t.Fatalf("project keys: %v %+v", err, keys)
	}

	d, _, err := c.Devices.Create(&packngo.DeviceCreateRequest{
		Hostname: "meta-1", Plan: "c3.small.x86", Metro: "sv", OS: "custom_ipxe", ProjectID: testProject,
		UserData: goodScript(srv), Tags: []string{fleetTag},
	})
	if err != nil {
		t.Fatalf("create in metro sv: %v", err)
	}
	if f := d.Facility; f == nil || (f.Code != "sjc1" && f.Code != "sv15") || f.Metro == nil || f.Metro.Code != "sv" {
		t.Errorf("metro create landed in %+v, want a facility of metro sv", f)
	}
	// Without include the project is a reference; with it, whole.
	if d.Project == nil || d.Project.ID != "" || d.Project.URL != "/metal/v1/projects/"+testProject {
		t.Errorf("default project = %+v, want an href only", d.Project)
	}
	got, _, err := c.Devices.Get(d.ID, &packngo.GetOptions{Includes: []string{"project", "metro", "facility"}})
	if err != nil || got.Project == nil || got.Project.ID != testProject || got.Project.Name == "" {
		t.Fatalf("get include=project: %v, project %+v", err, got.Project)
	}
	if len(got.SSHKeys) != 1 || got.SSHKeys[0].URL != k.URL {
		t.Errorf("device ssh_keys = %+v, want the project's key as a reference", got.SSHKeys)
	}
	got, _, err = c.Devices.Get(d.ID, &packngo.GetOptions{Excludes: []string{"ip_addresses"}})
	if err != nil || len(got.Network) != 3 || got.Network[0].Address != "" || got.Network[0].Href == "" {
		t.Fatalf("get exclude=ip_addresses: %v, %+v", err, got.Network)
	}
	ips, _, err := c.DeviceIPs.List(d.ID, nil)
	if err != nil || len(ips) != 3 || ips[0].Address == "" || ips[0].ParentBlock == nil {
		t.Fatalf("device ips: %v %+v", err, ips)
	}

	projects, _, err := c.Projects.List(nil)
	if err != nil || len(projects) != 1 || projects[0].ID != testProject {
		t.Fatalf("projects: %v %+v", err, projects)
	}
	// (packngo updates projects with PATCH, which the API description
	// lacks; the SDK test below drives PUT.)
	oss, _, err := c.OperatingSystems.List()
	if err != nil || !slices.ContainsFunc(oss, func(o packngo.OS) bool {
		return o.Slug == "custom_ipxe" && slices.Contains(o.ProvisionableOn, "c3.small.x86")
	}) {
		t.Fatalf("operating systems: %v %+v", err, oss)
	}
	if _, _, err := c.Devices.ListEvents(d.ID, &packngo.ListOptions{Page: 1, PerPage: 10, Excludes: []string{"relationships"}}); err != nil {
		t.Fatalf("events with exclude: %v", err)
	}
}

// TestContractFidelitySDK does the same with the generated SDK, and the
// routes packngo lacks (metadata, userdata, project customdata).
func TestContractFidelitySDK(t *testing.T) {
	doc := apispec.Load(t)
	srv := startSim(t, packetsim.Config{ProvisionTime: 20 * time.Millisecond})
	cfg := metalv1.NewConfiguration()
	cfg.Servers = metalv1.ServerConfigurations{{URL: srv.URL + "/metal/v1"}}
	cfg.AddDefaultHeader("X-Auth-Token", testToken)
	cfg.HTTPClient = &http.Client{Transport: apispec.NewValidatingTransport(t, doc, nil)}
	c := metalv1.NewAPIClient(cfg)
	ctx := context.Background()

	key := testKey(t, "bob@lab")
	if _, _, err := c.SSHKeysApi.CreateProjectSSHKey(ctx, testProject).SSHKeyCreateInput(metalv1.SSHKeyCreateInput{Label: metalv1.PtrString("bob"), Key: &key}).Execute(); err != nil {
		t.Fatalf("create project key: %v", err)
	}
	kl, _, err := c.SSHKeysApi.FindProjectSSHKeys(ctx, testProject).Include([]string{"entity"}).Execute()
	if err != nil || len(kl.SshKeys) != 1 || kl.SshKeys[0].GetKey() != key {
		t.Fatalf("project keys: %v", err)
	}
	if got := srv.Sim.ProjectSSHKeys(testProject); !slices.Equal(got, []string{key}) {
		t.Errorf("ProjectSSHKeys = %q, want the registered key", got)
	}

	script := goodScript(srv)
	in := metalv1.DeviceCreateInMetroInput{Metro: "am", Plan: "c3.small.x86", OperatingSystem: "custom_ipxe",
		Hostname: metalv1.PtrString("sdk-meta-1"), Userdata: &script, Tags: []string{fleetTag, "role=web"}}
	d, _, err := c.DevicesApi.CreateDevice(ctx, testProject).CreateDeviceRequest(metalv1.DeviceCreateInMetroInputAsCreateDeviceRequest(&in)).Include([]string{"project"}).Execute()
	if err != nil || d.Project.GetId() != testProject {
		t.Fatalf("create with include=project: %v", err)
	}
	upd, _, err := c.DevicesApi.UpdateDevice(ctx, d.GetId()).DeviceUpdateInput(metalv1.DeviceUpdateInput{Description: metalv1.PtrString("x")}).Exclude([]string{"facility"}).Execute()
	if err != nil || upd.Facility.GetCode() != "" {
		t.Fatalf("update with exclude=facility: %v", err)
	}
	if _, _, err := c.EventsApi.FindDeviceEvents(ctx, d.GetId()).Include([]string{"relationships"}).Exclude([]string{"relationships"}).Execute(); err != nil {
		t.Fatalf("events with include and exclude: %v", err)
	}
	if p, _, err := c.PlansApi.FindPlans(ctx).Exclude([]string{"available_in"}).Execute(); err != nil || len(p.Plans) == 0 || p.Plans[0].AvailableIn[0].Price != nil {
		t.Fatalf("plans with exclude=available_in: %v", err)
	}
	if p, ok := srv.Sim.DeviceProject(d.GetId()); !ok || p != testProject {
		t.Errorf("DeviceProject = %q %v", p, ok)
	}
	// The provider's read (include=project,metro,facility,hardware_reservation).
	got, _, err := c.DevicesApi.FindDeviceById(ctx, d.GetId()).Include([]string{"project", "metro", "facility", "hardware_reservation"}).Execute()
	if err != nil || got.Project == nil || got.Project.GetId() != testProject || got.Facility.GetCode() == "" || got.Metro.GetCode() != "am" {
		t.Fatalf("provider read: %v %+v", err, got.Project)
	}
	got, _, err = c.DevicesApi.FindDeviceById(ctx, d.GetId()).Exclude([]string{"ip_addresses", "plan"}).Execute()
	if err != nil || got.IpAddresses[0].GetAddress() != "" || got.Plan.GetSlug() != "" || got.Plan.AdditionalProperties["href"] == nil {
		t.Fatalf("exclude=ip_addresses,plan: %v", err)
	}
	l, _, err := c.DevicesApi.FindProjectDevices(ctx, testProject).Include([]string{"project"}).Exclude([]string{"ip_addresses"}).Execute()
	if err != nil || len(l.Devices) != 1 || l.Devices[0].Project.GetId() != testProject || l.Devices[0].IpAddresses[0].GetAddress() != "" {
		t.Fatalf("listing with include and exclude: %v", err)
	}

	md, _, err := c.DevicesApi.FindDeviceMetadataByID(ctx, d.GetId()).Execute()
	if err != nil || md.GetHostname() != "sdk-meta-1" || md.GetMetro() != "am" || !slices.Equal(md.SshKeys, []string{key}) ||
		len(md.Network.Addresses) != 3 || len(md.Network.Interfaces) != 2 {
		t.Fatalf("device metadata: %v %+v", err, md)
	}
	if u, ok := md.AdditionalProperties["user_state_url"].(string); !ok || u != srv.URL+"/metadata/"+d.GetId()+"/events" {
		t.Errorf("user_state_url = %v", md.AdditionalProperties["user_state_url"])
	}
	ud, _, err := c.DevicesApi.FindDeviceUserdataByID(ctx, d.GetId()).Execute()
	if err != nil || ud.GetUserdata() != script {
		t.Fatalf("device userdata: %v", err)
	}
	ips, _, err := c.DevicesApi.FindIPAssignments(ctx, d.GetId()).Execute()
	if err != nil || len(ips.IpAddresses) != 3 {
		t.Fatalf("device ips: %v", err)
	}

	// Project customdata round-trips (the apply lease lives there).
	lease := map[string]any{"lkfleet": map[string]any{"holder": "host-1", "since": "2026-12-01T10:00:00Z"}}
	if _, _, err := c.ProjectsApi.UpdateProject(ctx, testProject).ProjectUpdateInput(metalv1.ProjectUpdateInput{Customdata: lease}).Execute(); err != nil {
		t.Fatalf("update project customdata: %v", err)
	}
	pl, _, err := c.ProjectsApi.FindProjects(ctx).Execute()
	if err != nil || len(pl.Projects) != 1 {
		t.Fatalf("projects: %v", err)
	}
	if h := pl.Projects[0].Customdata["lkfleet"].(map[string]any)["holder"]; h != "host-1" {
		t.Errorf("customdata after update = %v", pl.Projects[0].Customdata)
	}
	if pl, _, err := c.ProjectsApi.FindProjects(ctx).Name("no such").Execute(); err != nil || len(pl.Projects) != 0 {
		t.Errorf("projects by a name that matches none: %v %d", err, len(pl.Projects))
	}
	oss, _, err := c.OperatingSystemsApi.FindOperatingSystems(ctx).Execute()
	if err != nil || !slices.ContainsFunc(oss.OperatingSystems, func(o metalv1.OperatingSystem) bool { return o.GetSlug() == "ubuntu_24_04" }) {
		t.Fatalf("operating systems: %v", err)
	}
}

// TestDoubledSlashIsServed: the provider joins a base URL ending in a
// slash with paths starting with one; the service answers those.
func TestDoubledSlashIsServed(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	var p struct {
		ID string `json:"id"`
	}
	if resp := apiDo(t, srv, "GET", "/metal/v1//projects/"+testProject, "", &p); resp.StatusCode != 200 || p.ID != testProject {
		t.Fatalf("GET /metal/v1//projects/{id}: %d %+v", resp.StatusCode, p)
	}
	if resp := apiDo(t, srv, "GET", "/metal/v1/nothing-here", "", nil); resp.StatusCode != 404 {
		t.Errorf("unknown route: %d, want 404", resp.StatusCode)
	}
}

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
