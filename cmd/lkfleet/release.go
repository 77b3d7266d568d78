package main

import (
	"strings"

	"github.com/lkfleet/lkfleet/pkg/imagestore"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// runningRelease is the release of a pushed image that a live device's
// boot script names, "" when it boots no release of the fleet's stores:
// the rev tag is a hash and cannot say which build a device runs, its
// script can.
func runningRelease(fleet *spec.Fleet, l planner.Live) string {
	slot, _ := spec.ParseSlot(l.Slot())
	for _, g := range fleet.Groups {
		if g.Name != slot.Group {
			continue
		}
		for _, im := range fleet.Images {
			if im.Key == g.Image && im.Store != nil {
				if rels, _ := imagestore.InUse([]string{l.Userdata + "\n" + l.ScriptURL}, im.Store); len(rels) > 0 {
					return strings.Join(rels, ",")
				}
			}
		}
	}
	return ""
}

// withRelease adds the release to status's IMAGE cell.
func withRelease(img, release string) string {
	if release == "" {
		return img
	}
	return img + " release " + release
}
