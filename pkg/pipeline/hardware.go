package pipeline

import (
	"context"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// Marketer is the optional part of a Backend that knows the project's
// hardware reservations and the spot prices. A Backend without it plans
// reserved and spot groups as if nothing were known about them: no
// reservation is assigned (creates ask for the next available one).
type Marketer interface {
	Market(ctx context.Context, need planner.MarketNeed) (planner.Market, error)
}

// Hardware assigns reservations to the plan's creates, warns about spot
// bids below the price and prices the plan. Reservations and spot prices
// are asked for only when the fleet's desired or live devices use them,
// so a plain fleet's plan costs no extra request; on-demand prices come
// with the catalogue.
func Hardware(ctx context.Context, b Backend, p *planner.Plan, in planner.Input) error {
	need := planner.NeedsOf(in)
	var m planner.Market
	mk, known := b.(Marketer)
	known = known && (need.Reservations || need.Spot)
	if known {
		var err error
		if m, err = mk.Market(ctx, need); err != nil {
			return err
		}
	}
	if in.Catalogue != nil {
		m.Prices = map[string]float64{}
		for slug, info := range in.Catalogue.Plans {
			m.Prices[slug] = info.Price
		}
	}
	if known {
		if err := planner.AssignHardware(p, m, in.Catalogue); err != nil {
			return err
		}
	}
	c := planner.ComputeCost(*p, in, m)
	p.Cost = &c
	return nil
}
