package packet

import (
	"context"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// TestSimMarketAndHardwareCreates reads reservations and spot prices and
// creates reserved and spot devices through the validating transport:
// the spot bid must go out as a number, not packngo's string.
func TestSimMarketAndHardwareCreates(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{Reservations: []packetsim.ReservationSeed{{Plan: "c3.small.x86", Zone: "ams1", Count: 1}}}, true, nil)
	ctx := context.Background()
	if _, err := c.Catalogue(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := c.Market(ctx, planner.MarketNeed{Reservations: true, Spot: true})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := srv.Sim.SpotPrice("am", "c3.small.x86")
	if len(m.Reservations) != 1 || m.Reservations[0].Metro != "am" || !m.Reservations[0].Provisionable || m.Spot[planner.SpotKey{Metro: "am", Plan: "c3.small.x86"}] != want {
		t.Fatalf("market = %+v, want one provisionable reservation in am and the spot price %v", m, want)
	}
	if n, err := c.Market(ctx, planner.MarketNeed{}); err != nil || n.Reservations != nil || n.Spot != nil {
		t.Errorf("market with no needs = %+v, %v; want nothing asked", n, err)
	}

	d := testDevice()
	d.Hardware.Reservation = spec.Reservation{IDs: []string{m.Reservations[0].ID}}
	live, err := c.Create(ctx, d)
	if err != nil || live.Reservation != m.Reservations[0].ID {
		t.Fatalf("reserved create: %v, reservation %q", err, live.Reservation)
	}
	d2 := testDevice()
	d2.Slot, d2.Hostname, d2.Index = "web/ams1/3", "web-ams1-3", 3
	d2.Hardware.Reservation = spec.Reservation{NextAvailable: true}
	if _, err := c.Create(ctx, d2); err == nil || !strings.Contains(err.Error(), "No available hardware reservations") {
		t.Fatalf("next-available with none left: %v", err)
	}
	d2.Hardware = spec.Hardware{SpotMaxPrice: want + 0.1}
	spot, err := c.Create(ctx, d2)
	if err != nil || !spot.Spot || spot.SpotMaxPrice != want+0.1 {
		t.Fatalf("spot create: %v, %+v", err, spot)
	}
	if err := srv.Sim.SetSpotPrice("am", "c3.small.x86", want+1); err != nil {
		t.Fatal(err)
	}
	devs, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range devs {
		if l.ID == spot.ID && l.TerminationTime.IsZero() {
			t.Errorf("listed outbid device has no termination time: %+v", l)
		}
		if l.ID == live.ID && l.Reservation != m.Reservations[0].ID {
			t.Errorf("listed reserved device lost its reservation: %+v", l)
		}
	}
}
