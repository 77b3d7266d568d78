package planner

import (
	"cmp"
	"strconv"
	"strings"
)

// SlotID is a parsed slot tag value: "<group>/<zone>/<index>".
type SlotID struct {
	Group string
	Zone  string
	Index int
}

// String renders the slot the way spec.SlotName does.
func (s SlotID) String() string {
	return s.Group + "/" + s.Zone + "/" + strconv.Itoa(s.Index)
}

// ParseSlot parses a slot tag value. Only the canonical form spec.SlotName
// writes is accepted (index from 1, no leading zeros, no empty parts): a
// slot that merely looks similar is not ours to interpret, and a device
// whose slot cannot be read is left alone rather than guessed at.
func ParseSlot(s string) (SlotID, bool) {
	group, rest, ok := strings.Cut(s, "/")
	if !ok {
		return SlotID{}, false
	}
	zone, idx, ok := strings.Cut(rest, "/")
	if !ok || group == "" || zone == "" || strings.Contains(idx, "/") {
		return SlotID{}, false
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n < 1 || strconv.Itoa(n) != idx {
		return SlotID{}, false
	}
	return SlotID{Group: group, Zone: zone, Index: n}, true
}

// CompareSlots orders slots naturally: by group, then zone, then index as
// a number (web/ams1/2 before web/ams1/10). Unparseable slots sort after
// parseable ones, by their text, so the order is total.
func CompareSlots(a, b string) int {
	sa, oka := ParseSlot(a)
	sb, okb := ParseSlot(b)
	switch {
	case oka && okb:
		return cmp.Or(
			cmp.Compare(sa.Group, sb.Group),
			cmp.Compare(sa.Zone, sb.Zone),
			cmp.Compare(sa.Index, sb.Index),
		)
	case oka:
		return -1
	case okb:
		return 1
	}
	return cmp.Compare(a, b)
}
