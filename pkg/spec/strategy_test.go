package spec

import "testing"

func TestStrategyTable(t *testing.T) {
	for _, tc := range []struct {
		s              Strategy
		pxe            bool
		want           Strategy
		note           string
		inPlace, needs bool
		known          bool
	}{
		{"", true, StrategyReboot, "", false, false, false},
		{"", false, StrategyReinstall, "", false, false, false},
		{StrategyReboot, true, StrategyReboot, "", true, true, true},
		{StrategyReboot, false, StrategyReinstall, "reinstall instead of reboot: without always_pxe a reboot does not load the new script", true, true, true},
		{StrategyReinstall, true, StrategyReinstall, "", true, false, true},
		{StrategyRecreate, false, StrategyRecreate, "", false, false, true},
		{"explode", true, "explode", "", false, false, false},
	} {
		got, note := tc.s.For(tc.pxe)
		if got != tc.want || note != tc.note {
			t.Errorf("%q.For(%v) = %q, %q; want %q, %q", tc.s, tc.pxe, got, note, tc.want, tc.note)
		}
		if tc.s.InPlace() != tc.inPlace || tc.s.NeedsAlwaysPXE() != tc.needs || tc.s.Known() != tc.known {
			t.Errorf("%q: in place %v, needs always_pxe %v, known %v", tc.s, tc.s.InPlace(), tc.s.NeedsAlwaysPXE(), tc.s.Known())
		}
	}
	if got := Strategies(); len(got) != 3 || got[0] != "reboot" || got[1] != "reinstall" || got[2] != "recreate" {
		t.Errorf("Strategies() = %q", got)
	}
}
