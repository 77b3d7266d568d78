package pipeline

import (
	"context"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// Marketer is the optional part of a Backend that knows the project's
// hardware reservations, the spot prices and the plans' prices. A Backend
// without it plans as before: no reservations, no cost line.
type Marketer interface {
	Market(ctx context.Context) (planner.Market, error)
}

// Hardware assigns reservations to the plan's creates, warns about spot
// bids below the price and prices the plan, when b is a Marketer. Asking
// the API costs one call per kind of data, and only when the fleet uses
// reservations or spot, or to price the plan.
func Hardware(ctx context.Context, b Backend, p *planner.Plan, in planner.Input) error {
	mk, ok := b.(Marketer)
	if !ok {
		return nil
	}
	m, err := mk.Market(ctx)
	if err != nil {
		return err
	}
	if err := planner.AssignHardware(p, m, in.Catalogue); err != nil {
		return err
	}
	c := planner.ComputeCost(*p, in, m)
	p.Cost = &c
	return nil
}
