package packetsim_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/equinix/equinix-sdk-go/services/metalv1"
	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/internal/apispec"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// TestContractReservationsPackngo lists, takes and frees reservations
// with packngo through the validating transport.
func TestContractReservationsPackngo(t *testing.T) {
	doc := apispec.Load(t)
	srv := startSim(t, packetsim.Config{ProvisionTime: 20 * time.Millisecond, DeprovisionTime: 60 * time.Millisecond,
		Reservations: []packetsim.ReservationSeed{{Plan: "c3.small.x86", Zone: "ams1", Count: 2}}})
	hc := &http.Client{Transport: apispec.NewValidatingTransport(t, doc, nil)}
	c, err := packngo.NewClientWithBaseURL("lkfleet-test", testToken, hc, srv.APIURL)
	if err != nil {
		t.Fatal(err)
	}
	list, _, err := c.HardwareReservations.List(testProject, nil)
	if err != nil || len(list) != 2 || !list[0].Provisionable || list[0].Plan.Slug != "c3.small.x86" || list[0].Facility.Code != "ams1" {
		t.Fatalf("list reservations: %v, %+v", err, list)
	}
	create := func(host, resv string) (*packngo.Device, error) {
		d, _, err := c.Devices.Create(&packngo.DeviceCreateRequest{
			Hostname: host, Plan: "c3.small.x86", Metro: "am", OS: "custom_ipxe", ProjectID: testProject,
			UserData: goodScript(srv), HardwareReservationID: resv, Tags: []string{}, // Tags has no omitempty
		})
		return d, err
	}
	d1, err := create("r1", list[1].ID)
	if err != nil || d1.HardwareReservation == nil || d1.HardwareReservation.ID != list[1].ID {
		t.Fatalf("create on reservation %s: %v, %+v", list[1].ID, err, d1)
	}
	d2, err := create("r2", "next-available")
	if err != nil || d2.HardwareReservation == nil || d2.HardwareReservation.ID != list[0].ID {
		t.Fatalf("create next-available: %v, %+v", err, d2)
	}
	if _, err := create("r3", "next-available"); err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "No available hardware reservations") {
		t.Fatalf("third create on two reservations: %v, want 422 no available reservations", err)
	}
	if _, err := create("r3", list[1].ID); err == nil || !strings.Contains(err.Error(), "not provisionable") {
		t.Fatalf("create on a held reservation: %v, want not provisionable", err)
	}
	r, _, err := c.HardwareReservations.Get(list[1].ID, nil)
	if err != nil || r.Provisionable || r.Device == nil || r.Device.ID != d1.ID {
		t.Fatalf("get held reservation: %v, %+v", err, r)
	}
	// Freed only once the old device has finished deprovisioning.
	if _, err := c.Devices.Delete(d1.ID, false); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := c.HardwareReservations.Get(list[1].ID, nil); r.Provisionable {
		t.Fatal("reservation provisionable while its device is still deprovisioning")
	}
	waitFor(t, "reservation freed", 5*time.Second, func() bool {
		r, _, err := c.HardwareReservations.Get(list[1].ID, nil)
		return err == nil && r.Provisionable
	})
	if d, err := create("r1b", list[1].ID); err != nil || d.HardwareReservation.ID != list[1].ID {
		t.Fatalf("create on the freed reservation: %v", err)
	}
	if _, _, err := c.HardwareReservations.Get("6a8c4c5e-0000-4000-8000-000000000000", nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("unknown reservation: %v, want 404", err)
	}
	plans, _, err := c.Plans.List(nil)
	if err != nil || len(plans) == 0 || plans[0].Pricing == nil || plans[0].Pricing.Hour <= 0 {
		t.Fatalf("plans carry hourly pricing: %v", err)
	}
}

// TestContractSpotMetalSDK reads spot prices, creates a spot device and
// has it outbid, with the generated SDK through the validating transport.
func TestContractSpotMetalSDK(t *testing.T) {
	doc := apispec.Load(t)
	srv := startSim(t, packetsim.Config{ProvisionTime: 20 * time.Millisecond, DeprovisionTime: 20 * time.Millisecond,
		Spot:         packetsim.SpotConfig{Notice: 80 * time.Millisecond},
		Reservations: []packetsim.ReservationSeed{{Plan: "m3.small.x86", Zone: "ny", Count: 1}}})
	cfg := metalv1.NewConfiguration()
	cfg.Servers = metalv1.ServerConfigurations{{URL: srv.URL + "/metal/v1"}}
	cfg.AddDefaultHeader("X-Auth-Token", testToken)
	cfg.HTTPClient = &http.Client{Transport: apispec.NewValidatingTransport(t, doc, nil)}
	c := metalv1.NewAPIClient(cfg)
	ctx := context.Background()

	want, ok := srv.Sim.SpotPrice("am", "c3.small.x86")
	if !ok || want <= 0 || want >= 0.75 {
		t.Fatalf("spot price of c3.small.x86 in am = %v %v, want below the on-demand 0.75", want, ok)
	}
	pm, _, err := c.SpotMarketApi.FindMetroSpotMarketPrices(ctx).Metro("am").Plan("c3.small.x86").Execute()
	if err != nil {
		t.Fatalf("metro prices: %v", err)
	}
	if got := pm.SpotMarketPrices.Am.GetC2MediumX86(); got.Price != nil {
		t.Errorf("plan filter let c2.medium.x86 through: %v", got)
	}
	var raw struct {
		SpotMarketPrices map[string]map[string]struct{ Price float64 } `json:"spot_market_prices"`
	}
	apiDo(t, srv, "GET", "/metal/v1/market/spot/prices/metros?metro=am", "", &raw)
	if len(raw.SpotMarketPrices) != 1 || raw.SpotMarketPrices["am"]["c3.small.x86"].Price != want {
		t.Fatalf("metro prices = %+v, want only am with c3.small.x86 at %v", raw.SpotMarketPrices, want)
	}
	if _, _, err := c.SpotMarketApi.FindSpotMarketPrices(ctx).Facility("ams1").Execute(); err != nil {
		t.Fatalf("facility prices: %v", err)
	}
	apiDo(t, srv, "GET", "/metal/v1/market/spot/prices?facility=ams1", "", &raw)
	if raw.SpotMarketPrices["ams1"]["c3.small.x86"].Price != want {
		t.Errorf("facility price = %+v, want %v", raw.SpotMarketPrices["ams1"], want)
	}

	script := goodScript(srv)
	mk := func(max float32) (*metalv1.Device, *http.Response, error) {
		in := metalv1.DeviceCreateInMetroInput{Metro: "am", Plan: "c3.small.x86", OperatingSystem: "custom_ipxe",
			Hostname: metalv1.PtrString("spot-1"), Userdata: &script, SpotInstance: metalv1.PtrBool(true), SpotPriceMax: &max}
		return c.DevicesApi.CreateDevice(ctx, testProject).CreateDeviceRequest(metalv1.DeviceCreateInMetroInputAsCreateDeviceRequest(&in)).Execute()
	}
	if _, resp, err := mk(float32(want / 2)); err == nil || resp.StatusCode != 422 {
		t.Fatalf("spot create bidding below the price: %v, want 422", err)
	}
	d, _, err := mk(float32(want + 0.1))
	if err != nil || !d.GetSpotInstance() || d.TerminationTime != nil {
		t.Fatalf("spot create: %v, %+v", err, d)
	}
	if err := srv.Sim.SetSpotPrice("am", "c3.small.x86", want+0.2); err != nil {
		t.Fatal(err)
	}
	got, _, err := c.DevicesApi.FindDeviceById(ctx, d.GetId()).Execute()
	if err != nil || got.TerminationTime == nil {
		t.Fatalf("outbid device: %v, termination_time %v", err, got.TerminationTime)
	}
	if lead := time.Until(*got.TerminationTime); lead <= 0 || lead > 80*time.Millisecond {
		t.Errorf("termination_time %s ahead, want within the 80ms notice", lead)
	}
	waitFor(t, "outbid device terminated", 5*time.Second, func() bool {
		_, code := getDevice(t, srv, d.GetId())
		return code == http.StatusNotFound
	})

	// A reservation in the SDK's shape.
	l, _, err := c.HardwareReservationsApi.FindProjectHardwareReservations(ctx, testProject).Provisionable("only").Execute()
	if err != nil || len(l.HardwareReservations) != 1 || l.HardwareReservations[0].Plan.GetSlug() != "m3.small.x86" || l.HardwareReservations[0].Facility.GetCode() != "ewr1" {
		t.Fatalf("reservations: %v, %+v", err, l)
	}
}

// TestSpotPriceMaxAsString accepts packngo's string form of spot_price_max.
func TestSpotPriceMaxAsString(t *testing.T) {
	srv := startSim(t, packetsim.Config{})
	d := createRaw(t, srv, `{"hostname":"s","plan":"c3.small.x86","metro":"am","operating_system":"custom_ipxe","userdata":`+jsonString(goodScript(srv))+`,"spot_instance":true,"spot_price_max":"5.5"}`)
	var got struct {
		Spot bool    `json:"spot_instance"`
		Max  float64 `json:"spot_price_max"`
	}
	apiDo(t, srv, "GET", "/metal/v1/devices/"+d.ID, "", &got)
	if !got.Spot || got.Max != 5.5 {
		t.Errorf("spot device = %+v, want spot at max 5.5", got)
	}
}

// TestSpotPricesWalk moves prices on their own when asked to, within
// 5-200 % of the on-demand price, from the same start as a still market.
func TestSpotPricesWalk(t *testing.T) {
	still := startSim(t, packetsim.Config{Seed: 7})
	p0, _ := still.Sim.SpotPrice("am", "c3.small.x86")
	a := startSim(t, packetsim.Config{Seed: 7, Spot: packetsim.SpotConfig{Walk: 0.5, Interval: time.Millisecond}})
	seen := map[float64]bool{}
	waitFor(t, "three price steps", 5*time.Second, func() bool {
		p, _ := a.Sim.SpotPrice("am", "c3.small.x86")
		if p < 0.75*0.05 || p > 0.75*2 {
			t.Fatalf("price %v outside 5-200%% of 0.75", p)
		}
		seen[p] = true
		return len(seen) > 3
	})
	if p, _ := still.Sim.SpotPrice("am", "c3.small.x86"); p != p0 {
		t.Errorf("a market without a walk moved from %v to %v", p0, p)
	}
}

// TestHardwareSurvivesRestart keeps reservation holders, bids and prices
// in --state.
func TestHardwareSurvivesRestart(t *testing.T) {
	state := t.TempDir() + "/state.json"
	cfg := packetsim.Config{StateFile: state, Token: testToken, Project: testProject, ImagesDir: t.TempDir(),
		Reservations: []packetsim.ReservationSeed{{Plan: "c3.small.x86", Zone: "ams1", Count: 1}}}
	// Started by hand: it is closed (and its state written) mid-test,
	// and a Server is closed once.
	a, err := packetsim.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := a.Sim.Reservations()[0].ID
	d := createRaw(t, a, `{"hostname":"r","plan":"c3.small.x86","metro":"am","operating_system":"custom_ipxe","userdata":`+jsonString(goodScript(a))+`,"hardware_reservation_id":"`+r+`"}`)
	s := createRaw(t, a, `{"hostname":"s","plan":"c3.small.x86","metro":"am","operating_system":"custom_ipxe","userdata":`+jsonString(goodScript(a))+`,"spot_instance":true,"spot_price_max":2}`)
	if err := a.Sim.SetSpotPrice("am", "c3.small.x86", 0.33); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b := startSim(t, cfg)
	if got := b.Sim.ReservationOf(d.ID); got != r {
		t.Errorf("after a restart device %s is on reservation %q, want %s", d.ID, got, r)
	}
	if p, _ := b.Sim.SpotPrice("am", "c3.small.x86"); p != 0.33 {
		t.Errorf("spot price after a restart = %v, want 0.33", p)
	}
	var got struct {
		Spot bool    `json:"spot_instance"`
		Max  float64 `json:"spot_price_max"`
	}
	apiDo(t, b, "GET", "/metal/v1/devices/"+s.ID, "", &got)
	if !got.Spot || got.Max != 2 {
		t.Errorf("spot device after a restart = %+v", got)
	}
}

// TestReservedDevicesAreOutsideCapacity: a reserved server does not take
// a place of the shared pool, nor give one back when deleted.
func TestReservedDevicesAreOutsideCapacity(t *testing.T) {
	srv := startSim(t, packetsim.Config{Capacity: 1, Reservations: []packetsim.ReservationSeed{{Plan: "c3.small.x86", Zone: "ams1", Count: 1}}})
	body := func(host, extra string) string {
		return `{"hostname":"` + host + `","plan":"c3.small.x86","facility":"ams1","operating_system":"custom_ipxe","userdata":` + jsonString(goodScript(srv)) + extra + `}`
	}
	r := createRaw(t, srv, body("r", `,"hardware_reservation_id":"next-available"`))
	createRaw(t, srv, body("a", ""))
	if resp := apiDo(t, srv, "POST", "/metal/v1/projects/"+testProject+"/devices", body("b", ""), nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second on-demand create with capacity 1: %d, want 503", resp.StatusCode)
	}
	apiDo(t, srv, "DELETE", "/metal/v1/devices/"+r.ID, "", nil)
	if resp := apiDo(t, srv, "POST", "/metal/v1/projects/"+testProject+"/devices", body("b", ""), nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("deleting the reserved device freed an on-demand place: %d", resp.StatusCode)
	}
}
