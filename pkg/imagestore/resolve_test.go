package imagestore_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/internal/s3test"
	"github.com/lkfleet/lkfleet/pkg/imagestore"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// TestResolvePerZoneAndStaleMirror resolves latest for devices in two
// zones, each on its own location, and fails the preflight naming the
// mirror that lacks the release.
func TestResolvePerZoneAndStaleMirror(t *testing.T) {
	srv := s3test.Start(t)
	srv.CreateBucket(t, "images")
	srv.CreateBucket(t, "images-ny")
	def, ny := loc(srv, "", "images", "sshd"), loc(srv, "ny", "images-ny", "sshd")
	st := &spec.ImageStore{Default: def, Mirrors: []spec.StoreLocation{ny}, Release: spec.ReleaseLatest}
	img := spec.Image{Key: "sshd", Name: "sshd", Store: st}
	desired := []spec.Device{{Slot: "web/am/1", Zone: "am", Image: img}, {Slot: "web/ny/1", Zone: "ny", Image: img}}
	ctx := context.Background()
	c := imagestore.NewChecker(http.DefaultClient, imagestore.Quick)

	if _, err := imagestore.Resolve(ctx, c, desired); err == nil || !strings.Contains(err.Error(), "nothing pushed to default store") {
		t.Fatalf("resolve before any push: %v", err)
	}
	b, err := imagestore.ReadBuild(writeBuild(t, "sshd", "console=ttyS1", 1<<20), "sshd")
	if err != nil {
		t.Fatal(err)
	}
	// Only the default store gets the build: the ny mirror is stale.
	if _, err := imagestore.Push(ctx, b, open(t, def), imagestore.PushOptions{SetLatest: true}); err != nil {
		t.Fatal(err)
	}
	got, err := imagestore.Resolve(ctx, c, desired)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Image.BaseURL != def.PublicURL+"/"+b.Release || got[1].Image.BaseURL != ny.PublicURL+"/"+b.Release {
		t.Fatalf("resolved base URLs: %s, %s", got[0].Image.BaseURL, got[1].Image.BaseURL)
	}
	if desired[0].Image.BaseURL != "" {
		t.Fatal("Resolve modified its input")
	}
	err = imagestore.Preflight(ctx, c, got)
	var ve *imagestore.VerifyError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("preflight with a stale mirror: %v", err)
	}
	for _, p := range ve.Problems {
		if !strings.HasPrefix(p.URL, ny.PublicURL+"/"+b.Release+"/") || !strings.Contains(p.Location, "mirror ny") || !strings.Contains(p.Msg, "not published on mirror ny") {
			t.Errorf("problem: %+v", p)
		}
	}

	// A pinned release is used as is, without reading latest.
	pinned := *st
	pinned.Release = b.Release
	img.Store = &pinned
	got, err = imagestore.Resolve(ctx, c, []spec.Device{{Zone: "am", Image: img}})
	if err != nil || got[0].Image.BaseURL != def.PublicURL+"/"+b.Release {
		t.Fatalf("pinned: %v %+v", err, got)
	}
	if err := imagestore.Preflight(ctx, c, got); err != nil {
		t.Fatal(err)
	}
}
