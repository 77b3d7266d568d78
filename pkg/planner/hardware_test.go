package planner

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

var testCat = &Catalogue{Facilities: map[string]string{"ams1": "am", "ewr1": "ny"}, Metros: map[string]bool{"am": true, "ny": true}}

// reservedFleet: web reserved (next-available) 2 in ams1 and ewr1, db on spot.
func reservedFleet() *spec.Fleet {
	f := testFleet()
	f.Groups[0].Hardware = spec.Hardware{Reservation: spec.Reservation{NextAvailable: true}}
	f.Groups[1].Hardware = spec.Hardware{SpotMaxPrice: 0.5}
	return f
}

func withHardware(f *spec.Fleet, ds []spec.Device) []spec.Device {
	for i := range ds {
		for _, g := range f.Groups {
			if g.Name == ds[i].Group {
				ds[i].Hardware = g.Hardware
			}
		}
	}
	return ds
}

func market() Market {
	return Market{
		Reservations: []Reservation{
			{ID: "r-ams-1", Plan: "c3.small.x86", Facility: "ams1", Metro: "am", Provisionable: true},
			{ID: "r-ams-2", Plan: "c3.small.x86", Facility: "ams1", Metro: "am", Provisionable: true},
			{ID: "r-ewr-1", Plan: "c3.small.x86", Facility: "ewr1", Metro: "ny", Provisionable: true},
			{ID: "r-ewr-2", Plan: "c3.small.x86", Facility: "ewr1", Metro: "ny", Provisionable: true},
			{ID: "r-other", Plan: "m3.large.x86", Facility: "ams1", Metro: "am", Provisionable: true},
		},
		Spot:   map[SpotKey]float64{{"am", "m3.large.x86"}: 0.9, {"am", "c3.small.x86"}: 0.2},
		Prices: map[string]float64{"c3.small.x86": 0.75, "m3.large.x86": 3.1},
	}
}

func planWith(t *testing.T, f *spec.Fleet, live []Live, m Market) (Plan, Input, error) {
	t.Helper()
	in := Input{Fleet: f, Desired: withHardware(f, desiredOf(f)), Live: live, Catalogue: testCat}
	p, err := Compute(in)
	if err != nil {
		t.Fatal(err)
	}
	err = AssignHardware(&p, m, testCat)
	return p, in, err
}

func TestAssignHardwareFreshFleet(t *testing.T) {
	f := reservedFleet()
	p, in, err := planWith(t, f, nil, market())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range p.Changes {
		got[c.Slot()] = c.Reservation
	}
	want := map[string]string{"web/ams1/1": "r-ams-1", "web/ams1/2": "r-ams-2", "web/ewr1/1": "r-ewr-1", "web/ewr1/2": "r-ewr-2", "db/ams1/1": ""}
	for s, r := range want {
		if got[s] != r {
			t.Errorf("slot %s takes %q, want %q", s, got[s], r)
		}
	}
	if len(p.Warnings) != 1 || !strings.Contains(p.Warnings[0], `group "db" in ams1: spot.max_price $0.50 is below the current spot price $0.90`) {
		t.Errorf("warnings = %q, want the db bid below the price", p.Warnings)
	}
	c := ComputeCost(p, in, market())
	// Reserved web devices cost nothing; db bids on spot at 0.90 now.
	if c.Before != 0 || c.After != 0.9 || len(c.Groups) != 2 || c.Groups[0].Group != "db" || c.Groups[0].SpotPrice != 0.9 || c.Groups[1].Reserved != 4 {
		t.Errorf("cost = %+v", c)
	}
	p.Cost = &c
	var buf bytes.Buffer
	if err := RenderText(&buf, p, TextOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Plan: 5 to add, 0 to rebuild, 0 to change, 0 to destroy. (≈ $0.90/hour after apply, +$0.90/hour)",
		`+ reservation = "next available in ams1 (r-ams-1)"`, `+ spot       = "max $0.50/hour (now $0.90 in am)"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text plan lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := RenderJSON(&buf, p); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"hourly_after": 0.9`, `"reservation": "r-ewr-2"`, `"spot_price": 0.9`, `"reserved": 4`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("JSON plan lacks %q", want)
		}
	}
}

func TestAssignHardwareTooFew(t *testing.T) {
	m := market()
	m.Reservations[3].Provisionable, m.Reservations[3].Device = false, "someone-else"
	_, _, err := planWith(t, reservedFleet(), nil, m)
	if err == nil || err.Error() != `plan: group "web" needs 1 more provisionable hardware reservation(s) than the project has (slots web/ewr1/2)` {
		t.Fatalf("err = %v", err)
	}
}

// A failed reserved device is replaced on its own reservation, taken once
// the failed device is gone.
func TestAssignHardwareReplaceKeepsReservation(t *testing.T) {
	f := reservedFleet()
	f.Groups = f.Groups[:1]
	f.Groups[0].Zones = []string{"ams1"}
	ds := withHardware(f, desiredOf(f))
	live := liveAll(ds)
	live[1].State, live[1].Reservation = StateFailed, "r-ams-2"
	live[0].Reservation = "r-ams-1"
	m := market()
	m.Reservations[0].Provisionable, m.Reservations[0].Device = false, live[0].ID
	m.Reservations[1].Provisionable, m.Reservations[1].Device = false, live[1].ID
	m.Reservations = m.Reservations[:2]
	p, in, err := planWith(t, f, live, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Action != Replace || p.Changes[0].Reservation != "r-ams-2" || p.Changes[0].ReservationAfter != live[1].ID {
		t.Fatalf("changes = %+v", p.Changes)
	}
	if got := p.Changes[0].ReservationText(); got != "next available in ams1 (r-ams-2), once device d-02 is gone" {
		t.Errorf("reservation text = %q", got)
	}
	if c := ComputeCost(p, in, m); c.Before != 0 || c.After != 0 {
		t.Errorf("reserved fleet costs %+v, want nothing", c)
	}
}

func TestTerminatingSpotDeviceIsReplaced(t *testing.T) {
	f := testFleet()
	f.Groups = f.Groups[1:]
	f.Groups[0].Hardware.SpotMaxPrice = 1
	ds := withHardware(f, desiredOf(f))
	live := liveAll(ds)
	live[0].Spot, live[0].SpotMaxPrice = true, 1
	live[0].TerminationTime = time.Date(2026, 12, 1, 21, 0, 0, 0, time.UTC)
	m := market()
	m.Spot[SpotKey{"am", "m3.large.x86"}] = 1.2
	p, in, err := planWith(t, f, live, m)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 1 || p.Changes[0].Action != Replace || p.Changes[0].Reasons[0] != "spot instance outbid: the service terminates it at 2026-12-01T21:00:00Z" {
		t.Fatalf("changes = %+v", p.Changes)
	}
	if c := ComputeCost(p, in, m); c.Before != 1.2 || c.After != 1.2 || c.CostLine() != "(≈ $1.20/hour after apply, +$0.00/hour)" {
		t.Errorf("cost = %+v %s", c, c.CostLine())
	}
}

// A create may take the reservation a delete of the same wave frees,
// after the deleted device is gone.
func TestAssignHardwareTakesWhatADeleteFrees(t *testing.T) {
	f := reservedFleet()
	f.Groups = f.Groups[:1]
	f.Groups[0].Zones = []string{"ams1"}
	o := orphan("o-3", "web/ams1/3", "ams1")
	o.Reservation = "r-ams-1"
	m := market()
	m.Reservations[0].Provisionable, m.Reservations[0].Device = false, "o-3"
	m.Reservations = m.Reservations[:2]
	p, _, err := planWith(t, f, []Live{o}, m)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]string{}
	for _, c := range p.Changes {
		got[c.Slot()] = [2]string{c.Reservation, c.ReservationAfter}
	}
	if got["web/ams1/1"] != [2]string{"r-ams-2", ""} || got["web/ams1/2"] != [2]string{"r-ams-1", "o-3"} {
		t.Errorf("assignments = %v", got)
	}
}
