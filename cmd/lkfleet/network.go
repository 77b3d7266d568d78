package main

import (
	"context"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// vlanLister is what planning needs to show VLAN differences.
type vlanLister interface {
	VirtualNetworks(ctx context.Context) ([]planner.VirtualNetwork, error)
}

// withVirtualNetworks lists the project's VLANs into the catalogue when a
// desired device has a network type (one request), so the plan can tell
// VLANs by number or description; fleets without network types pay
// nothing.
func withVirtualNetworks(ctx context.Context, c vlanLister, desired []spec.Device, cat *planner.Catalogue) error {
	for _, d := range desired {
		if d.NetworkType != "" {
			vs, err := c.VirtualNetworks(ctx)
			if err != nil {
				return err
			}
			cat.VirtualNetworks = vs
			return nil
		}
	}
	return nil
}
