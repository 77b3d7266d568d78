package packetsim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SpotConfig configures the spot market. The zero value keeps prices
// still; outbid devices get two minutes' notice.
type SpotConfig struct {
	// Walk is the largest relative move of one price step (0.1 = ±10 %);
	// 0 keeps prices where they start (SetSpotPrice still moves them).
	Walk float64
	// Interval is the time between steps (0 = one minute).
	Interval time.Duration
	// Notice is how long an outbid device runs after its termination_time
	// is set (0 = two minutes, the service's notice). Tests with
	// millisecond timings scale it down with the other durations.
	Notice time.Duration
}

// DefaultSpotNotice is the service's notice before an outbid spot device
// is terminated.
const DefaultSpotNotice = 2 * time.Minute

// priceKey is one spot price: a metro and a plan.
type priceKey struct{ metro, plan string }

// market holds the current spot prices. Walks draw from their own seeded
// source so moving prices do not change the ids the simulator hands out.
type market struct {
	mu    sync.Mutex
	price map[priceKey]float64
	rng   *rand.Rand
}

// spotBid is a spot device's bid; termAt is set once outbid.
type spotBid struct {
	max    float64
	metro  string
	termAt time.Time
}

// newMarket starts every plan's price in every metro it is sold in at a
// fixed share (20-40 %) of its on-demand price, derived from the names.
func newMarket(s *Sim) *market {
	m := &market{price: map[priceKey]float64{}, rng: rand.New(rand.NewPCG(s.cfg.Seed^0x5b07, 0x9a11))}
	for _, p := range s.cat.plans {
		for _, code := range p.Facilities {
			mc := s.cat.facBy[code].Metro.Code
			k := priceKey{mc, p.Slug}
			if _, ok := m.price[k]; !ok {
				share := 0.2 + 0.2*float64(nameID("spot:" + mc + ":" + p.Slug)[0])/255
				m.price[k] = roundPrice(p.Price * share)
			}
		}
	}
	return m
}

func roundPrice(v float64) float64 { return math.Round(v*10000) / 10000 }

// get returns the current price of plan in metro (false: not sold there).
func (m *market) get(metro, plan string) (float64, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.price[priceKey{metro, plan}]
	return v, ok
}

// step moves every price by up to ±walk, kept between 5 % and 200 % of the
// on-demand price.
func (m *market) step(s *Sim, walk float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range s.cat.plans { // catalogue order: reproducible draws
		for _, mt := range s.cat.metros {
			k := priceKey{mt.Code, p.Slug}
			v, ok := m.price[k]
			if !ok {
				continue
			}
			v *= 1 + walk*(2*m.rng.Float64()-1)
			m.price[k] = roundPrice(min(max(v, p.Price*0.05), p.Price*2))
		}
	}
}

// SetSpotPrice sets the spot price of plan in metro, as a market move
// would: spot devices bidding less are outbid at once.
func (s *Sim) SetSpotPrice(metro, plan string, price float64) error {
	k := priceKey{strings.ToLower(metro), plan}
	s.hw.market.mu.Lock()
	_, ok := s.hw.market.price[k]
	if ok {
		s.hw.market.price[k] = price
	}
	s.hw.market.mu.Unlock()
	if !ok {
		return fmt.Errorf("set spot price: plan %q is not sold in metro %q", plan, metro)
	}
	s.checkOutbids(s.now())
	return nil
}

// SpotPrice returns the current spot price of plan in metro.
func (s *Sim) SpotPrice(metro, plan string) (float64, bool) {
	return s.hw.market.get(strings.ToLower(metro), plan)
}

// notice is the configured termination notice.
func (s *Sim) notice() time.Duration {
	if s.cfg.Spot.Notice > 0 {
		return s.cfg.Spot.Notice
	}
	return DefaultSpotNotice
}

// checkOutbids gives every live spot device whose bid is now below its
// price a termination_time and schedules its termination.
func (s *Sim) checkOutbids(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, b := range s.hw.spot {
		d := s.devs[id]
		if d == nil || !d.deletedAt.IsZero() || !b.termAt.IsZero() {
			continue
		}
		if p, ok := s.hw.market.get(b.metro, d.plan.Slug); ok && p > b.max {
			b.termAt = now.Add(s.notice())
			d.updated = now
			s.sched.add(job{at: b.termAt, dev: id, kind: jobTerminate})
			s.markDirty()
		}
	}
}

// startMarket schedules the first price step when prices walk.
func (s *Sim) startMarket(now time.Time) {
	if s.cfg.Spot.Walk > 0 {
		s.sched.add(job{at: now.Add(s.spotInterval()), kind: jobSpotStep})
	}
}

func (s *Sim) spotInterval() time.Duration {
	if s.cfg.Spot.Interval > 0 {
		return s.cfg.Spot.Interval
	}
	return time.Minute
}

// runMarketJob runs a spot job from the scheduler; false: not one.
func (s *Sim) runMarketJob(j job, now time.Time) bool {
	switch j.kind {
	case jobSpotStep:
		s.hw.market.step(s, s.cfg.Spot.Walk)
		s.checkOutbids(now)
		s.sched.add(job{at: now.Add(s.spotInterval()), kind: jobSpotStep})
	case jobTerminate:
		s.mu.Lock()
		if d := s.devs[j.dev]; d != nil && d.deletedAt.IsZero() {
			s.markDeleted(d, now)
		}
		s.mu.Unlock()
	default:
		return false
	}
	return true
}

// errSpot is a spot create the service refuses (422).
type errSpot struct{ msg string }

func (e errSpot) Error() string { return e.msg }

// placeBid checks a create's spot fields against the price of its plan in
// fac's metro; the caller holds s.mu. nil: not a spot create.
func (s *Sim) placeBid(in *createInput, pl placement, fac *facility, r *reservation) (*spotBid, error) {
	if !in.SpotInstance {
		return nil, nil
	}
	if r != nil {
		return nil, errSpot{"spot_instance cannot be combined with hardware_reservation_id"}
	}
	if in.SpotPriceMax <= 0 {
		return nil, errSpot{"spot_price_max must be a positive number for a spot instance"}
	}
	p, ok := s.hw.market.get(fac.Metro.Code, pl.plan.Slug)
	if !ok {
		return nil, errSpot{fmt.Sprintf("Plan %s has no spot market in %s", pl.plan.Slug, fac.Metro.Code)}
	}
	if p > float64(in.SpotPriceMax) {
		return nil, errSpot{fmt.Sprintf("spot_price_max %g is below the spot price %g of %s in %s", float64(in.SpotPriceMax), p, pl.plan.Slug, fac.Metro.Code)}
	}
	return &spotBid{max: float64(in.SpotPriceMax)}, nil
}

// flexFloat is a number that may come as a JSON string: packngo sends
// spot_price_max as "0.45".
type flexFloat float64

// UnmarshalJSON accepts 0.45 and "0.45".
func (f *flexFloat) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("spot_price_max %s is not a number", b)
	}
	*f = flexFloat(v)
	return nil
}

// spotPrices answers GET /market/spot/prices (by facility) and
// /market/spot/prices/metros (by metro), filtered by facility or metro and
// plan like the service.
func (s *Sim) spotPrices(byMetro bool) apiHandler {
	return func(w http.ResponseWriter, r *http.Request, _ string) {
		q := r.URL.Query()
		loc, planF := strings.ToLower(q.Get("facility")), q.Get("plan")
		if byMetro {
			loc = strings.ToLower(q.Get("metro"))
		}
		out := map[string]map[string]map[string]float64{}
		s.hw.market.mu.Lock()
		for k, v := range s.hw.market.price {
			if planF != "" && k.plan != planF {
				continue
			}
			if byMetro {
				if loc == "" || loc == k.metro {
					put(out, k.metro, k.plan, v)
				}
				continue
			}
			for _, f := range s.cat.facilities {
				if f.Metro.Code == k.metro && s.cat.planBy[k.plan].supports(f.Code) && (loc == "" || loc == f.Code) {
					put(out, f.Code, k.plan, v)
				}
			}
		}
		s.hw.market.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"spot_market_prices": out})
	}
}

func put(out map[string]map[string]map[string]float64, loc, plan string, v float64) {
	if out[loc] == nil {
		out[loc] = map[string]map[string]float64{}
	}
	out[loc][plan] = map[string]float64{"price": v}
}
