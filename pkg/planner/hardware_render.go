package planner

// costSuffix is the cost part of the Plan: line, "" when unknown.
func costSuffix(c *Cost) string {
	if c == nil {
		return ""
	}
	return " " + c.CostLine()
}

// jsonCost is the plan's cost in -o json (docs/plan-format.md): USD per
// hour, reserved devices at 0.
type jsonCost struct {
	Currency string          `json:"currency"`
	Before   float64         `json:"hourly_before"`
	After    float64         `json:"hourly_after"`
	Delta    float64         `json:"hourly_delta"`
	Groups   []jsonGroupCost `json:"groups"`
}

type jsonGroupCost struct {
	Group     string   `json:"group"`
	Before    float64  `json:"hourly_before"`
	After     float64  `json:"hourly_after"`
	Delta     float64  `json:"hourly_delta"`
	Reserved  int      `json:"reserved"`
	Spot      int      `json:"spot"`
	OnDemand  int      `json:"on_demand"`
	SpotPrice *float64 `json:"spot_price,omitempty"`
	MaxPrice  *float64 `json:"spot_max_price,omitempty"`
}

func costJSON(c *Cost) *jsonCost {
	if c == nil {
		return nil
	}
	out := &jsonCost{Currency: "USD", Before: c.Before, After: c.After, Delta: round2(c.Delta()), Groups: make([]jsonGroupCost, 0, len(c.Groups))}
	for _, g := range c.Groups {
		jg := jsonGroupCost{Group: g.Group, Before: g.Before, After: g.After, Delta: round2(g.After - g.Before), Reserved: g.Reserved, Spot: g.Spot, OnDemand: g.OnDemand}
		if g.Spot > 0 {
			sp, mp := g.SpotPrice, g.MaxPrice
			jg.SpotPrice, jg.MaxPrice = &sp, &mp
		}
		out.Groups = append(out.Groups, jg)
	}
	return out
}

// spotLines tells, for each spot group, its bid and the current price,
// so a person sees how close the market is even when nothing changes.
func (t *textWriter) spotLines(p Plan) {
	if p.Cost == nil {
		return
	}
	for _, g := range p.Cost.Groups {
		if g.Spot > 0 {
			t.line("")
			t.line("Spot: group %q bids %s/hour; the current price is %s/hour.", g.Group, money(g.MaxPrice), money(g.SpotPrice))
		}
	}
}
