package imagestore

import (
	"fmt"
	"testing"
	"time"
)

func TestPlanPrune(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	rel := func(id string, age time.Duration, complete bool) ReleaseInfo {
		return ReleaseInfo{ID: id, Pushed: now.Add(-age), Complete: complete}
	}
	// Newest first, as Store.Releases lists them.
	rels := []ReleaseInfo{
		rel("aaaaaaaaaaaaaaa5", time.Minute, false), // a push running now
		rel("aaaaaaaaaaaaaaa4", time.Hour, true),
		rel("aaaaaaaaaaaaaaa3", 2*time.Hour, true),
		rel("aaaaaaaaaaaaaaa2", 3*time.Hour, true),
		rel("aaaaaaaaaaaaaaa1", 4*time.Hour, true),
		rel("aaaaaaaaaaaaaaa0", 48*time.Hour, false), // an interrupted push
	}
	for _, tc := range []struct {
		keep   int
		inUse  []string
		latest string
		want   string // delete flags, in order
	}{
		{keep: 1, latest: "aaaaaaaaaaaaaaa4", want: "kkdddd"},
		{keep: 2, latest: "aaaaaaaaaaaaaaa4", want: "kkkddd"},
		{keep: 1, inUse: []string{"aaaaaaaaaaaaaaa1"}, latest: "aaaaaaaaaaaaaaa4", want: "kkddkd"},
		{keep: 0, latest: "aaaaaaaaaaaaaaa2", want: "kddkdd"},
		{keep: 10, want: "kkkkkd"},
	} {
		t.Run(fmt.Sprintf("keep%d-%v-%s", tc.keep, tc.inUse, tc.latest), func(t *testing.T) {
			use := map[string]bool{}
			for _, r := range tc.inUse {
				use[r] = true
			}
			got := ""
			for _, d := range PlanPrune(rels, tc.keep, use, tc.latest, now) {
				if d.Delete {
					got += "d"
				} else {
					got += "k"
				}
				if d.Reason == "" {
					t.Errorf("%s: no reason", d.Release.ID)
				}
			}
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestReleaseID(t *testing.T) {
	a := []Artifact{{Name: "sshd-kernel", Size: 3, SHA256: "00"}, {Name: "sshd-initrd.img", Size: 4, SHA256: "11"}}
	b := []Artifact{{Name: "sshd-kernel", Size: 3, SHA256: "00"}, {Name: "sshd-initrd.img", Size: 4, SHA256: "12"}}
	c := []Artifact{{Name: "web-kernel", Size: 3, SHA256: "00"}, {Name: "web-initrd.img", Size: 4, SHA256: "11"}}
	if id := ReleaseID(a); !ValidReleaseID(id) || id != ReleaseID(a) {
		t.Fatalf("ReleaseID = %q, not a stable release id", id)
	}
	if ReleaseID(a) == ReleaseID(b) || ReleaseID(a) == ReleaseID(c) {
		t.Fatal("different builds share a release id")
	}
}
