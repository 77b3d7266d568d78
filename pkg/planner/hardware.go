package planner

// This file decides where the devices a plan creates come from (hardware
// reservations, the spot market, on demand) and what the fleet costs
// before and after the plan, from what the service says (Market).

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Market is what the service says about reservations and prices. The
// zero value knows nothing: every device then costs nothing known.
type Market struct {
	// Reservations are the project's hardware reservations.
	Reservations []Reservation
	// Spot is the current hourly spot price per metro and plan.
	Spot map[SpotKey]float64
	// Prices is the on-demand hourly price per plan slug.
	Prices map[string]float64
}

// SpotKey names one spot price.
type SpotKey struct{ Metro, Plan string }

// Reservation is one hardware reservation of the project.
type Reservation struct {
	ID            string
	Plan          string
	Facility      string
	Metro         string
	Provisionable bool
	// Device is the device holding it ("" = none).
	Device string
}

// Cost is what the fleet costs per hour now and after the plan, in USD.
// Reserved devices cost nothing here: the reservation is already paid.
type Cost struct {
	Before, After float64
	Groups        []GroupCost // by group name
}

// Delta is the change in hourly cost the plan makes.
func (c Cost) Delta() float64 { return c.After - c.Before }

// GroupCost is one group's part of Cost.
type GroupCost struct {
	Group         string
	Before, After float64
	// Reserved, Spot and OnDemand count the group's desired devices by
	// where they come from.
	Reserved, Spot, OnDemand int
	// SpotPrice is the current spot price of the group's plan in its
	// (first) zone's metro, and MaxPrice its bid (spot groups only).
	SpotPrice, MaxPrice float64
}

// creates reports whether c makes a new device.
func creates(c Change) bool {
	switch c.Action {
	case Create, Replace:
		return c.Desired != nil
	case Rebuild:
		return c.Desired != nil && !c.Strategy.InPlace()
	}
	return false
}

// inZone reports whether a reservation lies in zone (a facility or metro).
func (r Reservation) inZone(zone string) bool { return r.Facility == zone || r.Metro == zone }

// AssignHardware decides, for every change that creates a device of a
// reserved group, which reservation it takes: the one its old device holds
// (taken once that device is gone), a provisionable one, or one a delete
// of this plan frees. It fails, before anything is created, when a group
// needs more reservations than it can have. It also warns about spot
// groups that bid below the current price.
func AssignHardware(p *Plan, m Market, cat *Catalogue) error {
	byID := make(map[string]*Reservation, len(m.Reservations))
	for i := range m.Reservations {
		byID[m.Reservations[i].ID] = &m.Reservations[i]
	}
	taken := map[string]bool{}
	// Reservations a delete of this plan frees, and the delete's wave: a
	// create waits for that device to be gone, so only a create in the
	// same or a later wave may count on it.
	type freed struct {
		id   string
		wave int
	}
	freedBy := map[string]freed{}
	for _, c := range p.Changes {
		if c.Action == Delete && c.Live != nil && c.Live.Reservation != "" {
			freedBy[c.Live.Reservation] = freed{c.Live.ID, c.Wave}
		}
	}
	fits := func(d *spec.Device, r *Reservation) bool {
		h := d.Hardware.Reservation
		return r != nil && !taken[r.ID] && r.Plan == d.Machine && r.inZone(d.Zone) && (h.NextAvailable || slices.Contains(h.IDs, r.ID))
	}
	take := func(c *Change, r *Reservation, after string) {
		taken[r.ID] = true
		c.Reservation, c.ReservationAfter = r.ID, after
		c.Attrs = append(c.Attrs, AttrDiff{Name: "reservation", After: c.ReservationText()})
	}
	var rest []*Change
	// First every replacement keeps its old device's reservation.
	for i := range p.Changes {
		c := &p.Changes[i]
		if !creates(*c) || !c.Desired.Hardware.Reservation.Reserved() {
			continue
		}
		if c.Live != nil && fits(c.Desired, byID[c.Live.Reservation]) {
			take(c, byID[c.Live.Reservation], c.Live.ID)
			continue
		}
		rest = append(rest, c)
	}
	short := map[string][]string{} // group -> slots without one
	for _, c := range rest {
		var pick *Reservation
		after := ""
		for j := range m.Reservations { // free ones first
			if r := &m.Reservations[j]; pick == nil && r.Provisionable && fits(c.Desired, r) {
				pick = r
			}
		}
		for j := range m.Reservations { // then ones a delete of this plan frees
			r := &m.Reservations[j]
			if f, ok := freedBy[r.ID]; pick == nil && ok && f.wave <= c.Wave && fits(c.Desired, r) {
				pick, after = r, f.id
			}
		}
		if pick == nil {
			short[c.Desired.Group] = append(short[c.Desired.Group], c.Desired.Slot)
			continue
		}
		take(c, pick, after)
	}
	if len(short) > 0 {
		var msgs []string
		for _, g := range slices.Sorted(maps.Keys(short)) {
			msgs = append(msgs, fmt.Sprintf("group %q needs %d more provisionable hardware reservation(s) than the project has (slots %s)", g, len(short[g]), strings.Join(short[g], ", ")))
		}
		return fmt.Errorf("plan: %s", strings.Join(msgs, "; "))
	}
	p.Warnings = append(p.Warnings, spotWarnings(p, m, cat)...)
	return nil
}

// spotWarnings warns once per spot group and zone whose bid is below the
// current price: its creates would be refused.
func spotWarnings(p *Plan, m Market, cat *Catalogue) []string {
	var out []string
	seen := map[string]bool{}
	for i, c := range p.Changes {
		if !creates(c) || !c.Desired.Hardware.Spot() {
			continue
		}
		d := c.Desired
		metro := zoneMetro(d.Zone, cat)
		price, ok := m.Spot[SpotKey{metro, d.Machine}]
		if ok {
			p.Changes[i].Attrs = append(p.Changes[i].Attrs, AttrDiff{Name: "spot", After: fmt.Sprintf("max %s/hour (now %s in %s)", money(d.Hardware.SpotMaxPrice), money(price), metro)})
		}
		key := d.Group + "/" + d.Zone
		if ok && price > d.Hardware.SpotMaxPrice && !seen[key] {
			seen[key] = true
			out = append(out, fmt.Sprintf("group %q in %s: spot.max_price %s is below the current spot price %s of %s in %s; the service will refuse its creates",
				d.Group, d.Zone, money(d.Hardware.SpotMaxPrice), money(price), d.Machine, metro))
		}
	}
	return out
}

// zoneMetro is the metro of a zone (a facility or metro code).
func zoneMetro(zone string, cat *Catalogue) string {
	if m := cat.MetroOf(zone); m != "" {
		return m
	}
	return zone
}

// hourly is what one device costs per hour: nothing on a reservation, the
// spot price on the spot market, else the plan's on-demand price.
func hourly(m Market, machine, metro string, reserved, spot bool) float64 {
	switch {
	case reserved:
		return 0
	case spot:
		return m.Spot[SpotKey{metro, machine}]
	}
	return m.Prices[machine]
}

// ComputeCost prices the fleet's live devices (before) and its desired
// devices (after) per group.
func ComputeCost(p Plan, in Input, m Market) Cost {
	groups := map[string]*GroupCost{}
	get := func(name string) *GroupCost {
		if groups[name] == nil {
			groups[name] = &GroupCost{Group: name}
		}
		return groups[name]
	}
	for _, l := range in.Live {
		if Ignored(l.State) || l.Fleet() != in.Fleet.Name {
			continue
		}
		s, ok := spec.ParseSlot(l.Slot())
		if !ok {
			continue
		}
		get(s.Group).Before += hourly(m, l.Machine, cmp.Or(l.Metro, zoneMetro(l.Facility, in.Catalogue)), l.Reservation != "", l.Spot)
	}
	for _, d := range in.Desired {
		g := get(d.Group)
		metro := zoneMetro(d.Zone, in.Catalogue)
		h := d.Hardware
		g.After += hourly(m, d.Machine, metro, h.Reservation.Reserved(), h.Spot())
		switch {
		case h.Reservation.Reserved():
			g.Reserved++
		case h.Spot():
			g.Spot++
			g.MaxPrice = h.SpotMaxPrice
			if g.SpotPrice == 0 {
				g.SpotPrice = m.Spot[SpotKey{metro, d.Machine}]
			}
		default:
			g.OnDemand++
		}
	}
	var c Cost
	for _, name := range slices.Sorted(maps.Keys(groups)) {
		g := groups[name]
		g.Before, g.After = round2(g.Before), round2(g.After)
		c.Before += g.Before
		c.After += g.After
		c.Groups = append(c.Groups, *g)
	}
	c.Before, c.After = round2(c.Before), round2(c.After)
	return c
}

func round2(v float64) float64 { return float64(int64(v*10000+0.5)) / 10000 }

// money formats an hourly amount: $0.45, $3.40, $0.0700 below a cent.
func money(v float64) string {
	if v != 0 && v < 0.01 && v > -0.01 {
		return fmt.Sprintf("$%.4f", v)
	}
	return fmt.Sprintf("$%.2f", v)
}

// CostLine is the plan line's suffix: "(≈ $3.40/hour after apply,
// +$2.10/hour)".
func (c Cost) CostLine() string {
	d := c.Delta()
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("(≈ %s/hour after apply, %s%s/hour)", money(c.After), sign, money(d))
}

// terminatingReason explains the replacement of an outbid spot device.
func terminatingReason(l *Live) string {
	return "spot instance outbid: the service terminates it at " + l.TerminationTime.UTC().Format(time.RFC3339)
}

// ReservationText says which reservation a change takes, for people.
func (c Change) ReservationText() string {
	if c.Desired == nil || !c.Desired.Hardware.Reservation.Reserved() || !creates(c) {
		return ""
	}
	s := c.Reservation
	if c.Desired.Hardware.Reservation.NextAvailable {
		s = "next available in " + c.Desired.Zone + " (" + c.Reservation + ")"
	}
	if c.ReservationAfter != "" {
		s += ", once device " + c.ReservationAfter + " is gone"
	}
	return s
}

// MarketNeed says which parts of the Market a plan needs.
type MarketNeed struct {
	Reservations, Spot bool
}

// NeedsOf says what the input's desired and live devices use.
func NeedsOf(in Input) MarketNeed {
	var n MarketNeed
	for _, d := range in.Desired {
		n.Reservations = n.Reservations || d.Hardware.Reservation.Reserved()
		n.Spot = n.Spot || d.Hardware.Spot()
	}
	for _, l := range in.Live {
		n.Spot = n.Spot || l.Spot
	}
	return n
}
