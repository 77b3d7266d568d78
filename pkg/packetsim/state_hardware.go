package packetsim

import (
	"slices"
	"strings"
	"time"
)

// stateHardware keeps what --state needs to restore reservations and the
// spot market: which device holds which reservation (the reservations
// themselves come from the seeds again), the bids, and the prices.
type stateHardware struct {
	Holders []stateHolder `json:"holders,omitempty"`
	Bids    []stateBid    `json:"bids,omitempty"`
	Prices  []statePrice  `json:"prices,omitempty"`
}

type stateHolder struct {
	Reservation string `json:"reservation"`
	Device      string `json:"device"`
}

type stateBid struct {
	Device string    `json:"device"`
	Max    float64   `json:"max"`
	Metro  string    `json:"metro"`
	TermAt time.Time `json:"term_at,omitzero"`
}

type statePrice struct {
	Metro string  `json:"metro"`
	Plan  string  `json:"plan"`
	Price float64 `json:"price"`
}

// snapshotHardware copies the hardware state; the caller holds s.mu.
func (s *Sim) snapshotHardware(now time.Time) *stateHardware {
	st := &stateHardware{}
	for _, r := range s.hw.resv {
		if r.dev != nil && !r.dev.goneAt(now, s.cfg.DeprovisionTime) {
			st.Holders = append(st.Holders, stateHolder{Reservation: r.id.String(), Device: r.dev.id.String()})
		}
	}
	for id, b := range s.hw.spot {
		st.Bids = append(st.Bids, stateBid{Device: id.String(), Max: b.max, Metro: b.metro, TermAt: b.termAt})
	}
	slices.SortFunc(st.Bids, func(a, b stateBid) int { return strings.Compare(a.Device, b.Device) })
	s.hw.market.mu.Lock()
	for k, v := range s.hw.market.price {
		st.Prices = append(st.Prices, statePrice{Metro: k.metro, Plan: k.plan, Price: v})
	}
	s.hw.market.mu.Unlock()
	slices.SortFunc(st.Prices, func(a, b statePrice) int {
		return strings.Compare(a.Metro+"/"+a.Plan, b.Metro+"/"+b.Plan)
	})
	return st
}

// loadHardware restores what snapshotHardware saved; entries naming a
// device or reservation that no longer exists are dropped. The caller
// holds (or does not need) s.mu: it runs while the Sim is being built.
func (s *Sim) loadHardware(st *stateHardware) {
	if st == nil {
		return
	}
	dev := func(id string) *device {
		u, ok := parseUUID(id)
		if !ok {
			return nil
		}
		return s.devs[u]
	}
	for _, h := range st.Holders {
		u, _ := parseUUID(h.Reservation)
		if r, d := s.hw.resvBy[u], dev(h.Device); r != nil && d != nil {
			r.dev = d
			s.hw.devRes[d.id] = r
			if d.deletedAt.IsZero() {
				s.capUsed[capKey{d.fac.Code, d.plan.Slug}]-- // insert counted it in the pool
			}
		}
	}
	for _, b := range st.Bids {
		d := dev(b.Device)
		if d == nil {
			continue
		}
		s.hw.spot[d.id] = &spotBid{max: b.Max, metro: b.Metro, termAt: b.TermAt}
		if !b.TermAt.IsZero() && d.deletedAt.IsZero() {
			s.sched.add(job{at: b.TermAt, dev: d.id, kind: jobTerminate})
		}
	}
	for _, p := range st.Prices {
		k := priceKey{p.Metro, p.Plan}
		if _, ok := s.hw.market.price[k]; ok {
			s.hw.market.price[k] = p.Price
		}
	}
}
