package pipeline

import (
	"context"
	"fmt"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Images is what planning asks of the images published with lkfleet push
// (an image with a store in the fleet file): which release each device
// boots and from which location, and whether those objects are complete.
// pkg/imagestore implements it (imagestore.Resolver); pipeline declares it
// so that planning needs no storage client and its tests no sockets.
// Devices whose image has no store pass through every method untouched.
type Images interface {
	// Resolve returns desired with each store image's BaseURL pointed at
	// its release (pinned, or the latest pushed) on the location its
	// device's zone boots from. desired is not modified.
	Resolve(ctx context.Context, desired []spec.Device) ([]spec.Device, error)
	// Preflight verifies every object the resolved devices will boot
	// against its release manifest, naming the URL and the location of
	// whatever is missing, partial or stale.
	Preflight(ctx context.Context, desired []spec.Device) error
	// Warnings are notes for the plan about mirrors that go unused;
	// metroOf maps facility codes to metros (the catalogue's Facilities).
	Warnings(desired []spec.Device, metroOf map[string]string) []string
}

// resolveImages resolves the store images of desired through im. A nil im
// is fine for fleets without store images; with one, it is an error, not
// a script pointing at no release.
func resolveImages(ctx context.Context, im Images, desired []spec.Device) ([]spec.Device, error) {
	stored := false
	for i := range desired {
		stored = stored || desired[i].Image.Store != nil
	}
	if !stored {
		// Nothing to resolve: no copy of the devices (ipxe.Render makes
		// its own), which over 100,000 devices cost a twentieth of a plan.
		return desired, nil
	}
	if im != nil {
		return im.Resolve(ctx, desired)
	}
	for _, d := range desired {
		if d.Image.Store != nil {
			return nil, fmt.Errorf("image %s is published with lkfleet push, and planning was given no image store to resolve its release", d.Image.Key)
		}
	}
	return desired, nil
}

// imageWarnings are im's warnings, none without im.
func imageWarnings(im Images, desired []spec.Device, metroOf map[string]string) []string {
	if im == nil {
		return nil
	}
	return im.Warnings(desired, metroOf)
}
