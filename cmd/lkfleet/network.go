package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// countFleetVLANs returns how many VLANs carry the fleet's tag.
func countFleetVLANs(ctx context.Context, c vlanDeleter, fleet string) (int, error) {
	vs, err := c.VirtualNetworks(ctx)
	n := 0
	for _, v := range vs {
		if slices.Contains(v.Tags, spec.TagFleet+fleet) {
			n++
		}
	}
	return n, err
}

// vlanDeleter is what destroy needs to remove the fleet's VLANs.
type vlanDeleter interface {
	VirtualNetworks(ctx context.Context) ([]planner.VirtualNetwork, error)
	DeleteVirtualNetwork(ctx context.Context, id string) error
}

// deleteFleetVLANs deletes the VLANs the fleet created (tagged
// lkfleet:fleet=<fleet>) that no device uses any more, and only those: a
// VLAN made by hand or by another fleet stays, and so does one a port still
// carries (the service refuses; again, the command to run once it is free,
// is printed).
func deleteFleetVLANs(ctx context.Context, c vlanDeleter, fleet, again string, out io.Writer) error {
	vs, err := c.VirtualNetworks(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, v := range vs {
		if !slices.Contains(v.Tags, spec.TagFleet+fleet) {
			continue
		}
		if v.Users > 0 {
			fmt.Fprintf(out, "VLAN %d (metro %s) is still used by %d device(s): kept; run %s once they are gone.\n", v.VXLAN, v.Metro, v.Users, again)
			continue
		}
		if err := c.DeleteVirtualNetwork(ctx, v.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(out, "Deleted VLAN %d (metro %s), created by fleet %s.\n", v.VXLAN, v.Metro, fleet)
	}
	return errors.Join(errs...)
}
