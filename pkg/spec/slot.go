package spec

import (
	"cmp"
	"strconv"
	"strings"
)

// Slot is a device's identity inside its fleet: the value of its
// lkfleet:slot= tag, "<group>/<zone>/<index>". It is the one slot type of
// the tree; planner, executor and the commands parse, print and order
// slots only through it, so plan and status cannot disagree on the order.
type Slot struct {
	Group string
	Zone  string
	Index int // from 1
}

// String renders the slot as its tag value, "group/zone/index".
func (s Slot) String() string {
	return s.Group + "/" + s.Zone + "/" + strconv.Itoa(s.Index)
}

// ParseSlot parses a slot tag value. Only the canonical form String writes
// is accepted (index from 1, no leading zeros or sign, no empty parts): a
// slot that merely looks similar is not ours to interpret, and a device
// whose slot cannot be read is left alone rather than guessed at.
func ParseSlot(s string) (Slot, bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return Slot{}, false
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n < 1 || strconv.Itoa(n) != parts[2] {
		return Slot{}, false
	}
	return Slot{Group: parts[0], Zone: parts[1], Index: n}, true
}

// Compare orders slots naturally: by group, then zone (digit runs compare
// by value, so ams2 < ams10), then index as a number. This is the order
// docs/fleet-file.md promises for plan and status alike.
func (s Slot) Compare(o Slot) int {
	return cmp.Or(NaturalCompare(s.Group, o.Group), NaturalCompare(s.Zone, o.Zone), cmp.Compare(s.Index, o.Index))
}

// CompareSlots orders slot tag values with Slot.Compare. Values that are
// not slots sort after slots, by plain string order, so the order is total.
func CompareSlots(a, b string) int {
	sa, okA := ParseSlot(a)
	sb, okB := ParseSlot(b)
	switch {
	case okA && okB:
		return sa.Compare(sb)
	case okA:
		return -1
	case okB:
		return 1
	}
	return strings.Compare(a, b)
}

// NaturalCompare compares strings with runs of ASCII digits compared by
// numeric value (web2 < web10); ties in value (a01 vs a1) fall back to
// plain byte order so the order stays total.
func NaturalCompare(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ca, cb := a[i], b[j]
		if isDigit(ca) && isDigit(cb) {
			si, sj := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			na := strings.TrimLeft(a[si:i], "0")
			nb := strings.TrimLeft(b[sj:j], "0")
			if c := cmp.Or(cmp.Compare(len(na), len(nb)), strings.Compare(na, nb)); c != 0 {
				return c
			}
			continue
		}
		if ca != cb {
			return cmp.Compare(ca, cb)
		}
		i++
		j++
	}
	if c := cmp.Compare(len(a)-i, len(b)-j); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
