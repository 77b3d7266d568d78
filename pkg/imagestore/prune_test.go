package imagestore

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/spec"
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

func TestMirrorWarnings(t *testing.T) {
	st := &spec.ImageStore{Default: spec.StoreLocation{Bucket: "images"}, Mirrors: []spec.StoreLocation{{Zone: "ny", Bucket: "images-ny"}, {Zone: "sjc1", Bucket: "images-sv"}}}
	img := spec.Image{Key: "sshd", Store: st}
	devs := []spec.Device{
		{Zone: "ewr1", Image: img}, {Zone: "ewr1", Image: img}, // metro ny has a mirror: warn once
		{Zone: "ny", Image: img},   // uses its mirror
		{Zone: "sjc1", Image: img}, // uses its mirror
		{Zone: "ams1", Image: img}, // metro am has none: default is right
		{Zone: "ewr1", Image: spec.Image{Key: "plain"}},
	}
	got := MirrorWarnings(devs, map[string]string{"ewr1": "ny", "sjc1": "sv", "ams1": "am"})
	if len(got) != 1 || !strings.Contains(got[0], `devices in ewr1`) || !strings.Contains(got[0], `metro "ny"`) {
		t.Fatalf("warnings = %q", got)
	}
	if MirrorWarnings(devs, nil) != nil {
		t.Fatal("warnings without a catalogue")
	}
}
