package spec

import (
	"slices"
	"testing"
)

func TestParseSlot(t *testing.T) {
	good := map[string]Slot{
		"web/ams1/1":  {"web", "ams1", 1},
		"db/am/12":    {"db", "am", 12},
		"a-b/sjc1/99": {"a-b", "sjc1", 99},
	}
	for s, want := range good {
		got, ok := ParseSlot(s)
		if !ok || got != want || got.String() != s {
			t.Errorf("ParseSlot(%q) = %+v, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "web", "web/ams1", "web/ams1/0", "web/ams1/01", "web/ams1/-1", "web/ams1/x", "/ams1/1", "web//1", "web/ams1/1/2", "web/ams1/+1"} {
		if _, ok := ParseSlot(s); ok {
			t.Errorf("ParseSlot(%q) accepted", s)
		}
	}
	slots := []string{"web/ams1/10", "zzz", "web/ams1/2", "db/ewr1/1", "web/ams1/1", "aaa", "web/ewr1/1"}
	slices.SortFunc(slots, CompareSlots)
	want := []string{"db/ewr1/1", "web/ams1/1", "web/ams1/2", "web/ams1/10", "web/ewr1/1", "aaa", "zzz"}
	if !slices.Equal(slots, want) {
		t.Errorf("sorted = %q, want %q", slots, want)
	}
}
