package spec

// This file reads the keys that say where a group's machines come from:
// hardware_reservation (next-available, one UUID or a list of UUIDs) and
// spot ({max_price: USD/hour}).

import (
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// The keys are registered here so the key lists in load.go stay as they
// were for every other key.
func init() {
	groupKeys = append(groupKeys, "hardware_reservation", "spot")
	defaultKeys = groupKeys[1:]
}

// NextAvailable is the hardware_reservation value that takes any
// provisionable reservation of the group's plan in its zone.
const NextAvailable = "next-available"

// MaxSpotPrice bounds spot.max_price (USD/hour): a typo such as 450 for
// 4.50 must not bid without limit.
const MaxSpotPrice = 100.0

// spotKeys are the keys of a spot mapping.
var spotKeys = []string{"max_price"}

// Hardware says where a group's devices come from. The zero value is on
// demand.
type Hardware struct {
	// Reservation is the group's hardware_reservation.
	Reservation Reservation
	// SpotMaxPrice is the highest hourly price the group bids on the spot
	// market; 0 = not spot.
	SpotMaxPrice float64
}

// Reservation is a hardware_reservation value. The zero value uses none.
type Reservation struct {
	// NextAvailable takes any provisionable reservation that fits.
	NextAvailable bool
	// IDs are the reservations the group's devices take, lower-case, in
	// file order.
	IDs []string
}

// Reserved reports whether devices use reservations at all.
func (r Reservation) Reserved() bool { return r.NextAvailable || len(r.IDs) > 0 }

// String renders the value as written in a fleet file.
func (r Reservation) String() string {
	switch {
	case r.NextAvailable:
		return NextAvailable
	case len(r.IDs) == 1:
		return r.IDs[0]
	case len(r.IDs) > 1:
		return "[" + strings.Join(r.IDs, ", ") + "]"
	}
	return ""
}

// Spot reports whether devices are bid for on the spot market.
func (h Hardware) Spot() bool { return h.SpotMaxPrice > 0 }

// hardwareSpec is the two keys as written in a group or defaults.
type hardwareSpec struct {
	resv     Reservation
	resvSet  bool
	resvNode *yaml.Node
	resvPath string
	spot     float64
	spotSet  bool
	spotNode *yaml.Node
}

// hardwareSpec decodes hardware_reservation and spot from fs.
func (l *loader) hardwareSpec(fs fields) hardwareSpec {
	var h hardwareSpec
	if n, path, ok := fs.lookup("hardware_reservation"); ok {
		h.resvNode, h.resvPath = n, path
		h.resv, h.resvSet = l.reservation(n, path)
	}
	if n, path, ok := fs.lookup("spot"); ok {
		h.spotNode = n
		h.spot, h.spotSet = l.spot(n, path)
	}
	if h.resvSet && h.spotSet {
		l.add(h.spotNode, joinPath(fs.path, "spot"), "a group is either spot or on hardware reservations, not both (reserved servers are already paid for)")
		h.spotSet = false
	}
	return h
}

// reservation decodes next-available, one UUID, or a list of UUIDs.
func (l *loader) reservation(n *yaml.Node, path string) (Reservation, bool) {
	r := resolve(n)
	if r.Kind == yaml.ScalarNode {
		s, ok := l.scalarString(n, path, true)
		if !ok {
			return Reservation{}, false
		}
		switch {
		case s == NextAvailable:
			return Reservation{NextAvailable: true}, true
		case reUUID.MatchString(s):
			return Reservation{IDs: []string{strings.ToLower(s)}}, true
		}
		l.add(n, path, "%q is not %s or a reservation UUID%s", s, NextAvailable, didYouMean(s, []string{NextAvailable}))
		return Reservation{}, false
	}
	if r.Kind != yaml.SequenceNode {
		l.add(n, path, "must be %s, a reservation UUID or a list of UUIDs, not %s", NextAvailable, describe(r))
		return Reservation{}, false
	}
	if len(r.Content) == 0 {
		l.add(n, path, "must list at least one reservation UUID (or say %s)", NextAvailable)
		return Reservation{}, false
	}
	var out Reservation
	good := true
	for i, e := range r.Content {
		p := path + "[" + strconv.Itoa(i) + "]"
		s, ok := l.scalarString(e, p, true)
		id := strings.ToLower(s)
		switch {
		case !ok:
			good = false
		case s == NextAvailable:
			l.add(e, p, "%s stands alone: write hardware_reservation: %s", NextAvailable, NextAvailable)
			good = false
		case !reUUID.MatchString(s):
			l.add(e, p, "%q is not a reservation UUID", s)
			good = false
		case slices.Contains(out.IDs, id):
			l.add(e, p, "reservation %s is listed twice", id)
			good = false
		default:
			out.IDs = append(out.IDs, id)
		}
	}
	return out, good
}

// spot decodes {max_price: N}.
func (l *loader) spot(n *yaml.Node, path string) (float64, bool) {
	fs := l.fieldsOf(n, path, spotKeys)
	vn, vpath, ok := fs.lookup("max_price")
	if !ok {
		if resolve(n).Kind == yaml.MappingNode {
			l.add(vn, vpath, "missing; spot needs the highest hourly price to bid, e.g. spot: {max_price: 0.45}")
		}
		return 0, false
	}
	r := resolve(vn)
	if r.Kind != yaml.ScalarNode || (r.ShortTag() != "!!float" && r.ShortTag() != "!!int" && !strings.Contains(r.Value, "${")) {
		l.add(vn, vpath, "must be a price in USD/hour like 0.45, not %s", quoteScalar(r))
		return 0, false
	}
	s, good := l.scalarText(vn, vpath, "a price")
	if !good {
		return 0, false
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v <= 0 || v > MaxSpotPrice {
		l.add(vn, vpath, "%s must be a price above 0 and at most %g USD/hour", strings.TrimSpace(s), MaxSpotPrice)
		return 0, false
	}
	return v, true
}

// resolveHardware picks the group's values over the defaults'. The two
// keys are one unit: a group that sets either replaces both.
func resolveHardware(g, d hardwareSpec) Hardware {
	src := d
	if g.resvSet || g.spotSet || g.resvNode != nil || g.spotNode != nil {
		src = g
	}
	var h Hardware
	if src.resvSet {
		h.Reservation = src.resv
	}
	if src.spotSet {
		h.SpotMaxPrice = src.spot
	}
	return h
}

// checkHardware reports a reservation list too short for the group.
func (l *loader) checkHardware(h Hardware, out Group, g, d hardwareSpec) Hardware {
	src := g
	if src.resvNode == nil {
		src = d
	}
	if need := out.Count * len(out.Zones); len(h.Reservation.IDs) > 0 && need > len(h.Reservation.IDs) {
		l.add(src.resvNode, src.resvPath, "lists %d reservation(s) but the group has %d device(s) (count %d × %d zone(s)); list more or use %s",
			len(h.Reservation.IDs), need, out.Count, len(out.Zones), NextAvailable)
	}
	return h
}
