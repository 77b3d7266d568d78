package packet

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/packethost/packngo"
)

// Catalogue is what the service offers: machine types (plans), facilities
// and metros. The planner checks a fleet's machines and zones against it
// before anything is created.
type Catalogue struct {
	Plans      []Plan     // sorted by slug
	Facilities []Facility // sorted by code
	Metros     []Metro    // sorted by code
}

// Plan is one machine type.
type Plan struct {
	Slug  string
	Name  string
	Class string
	// Legacy plans are still accepted but no longer sold everywhere.
	Legacy bool
	// Facilities and Metros list where the plan is offered, when the API
	// says (codes, sorted); empty means unknown.
	Facilities []string
	Metros     []string
}

// Facility is one data centre (deprecated by the service but accepted).
type Facility struct {
	Code  string
	Name  string
	Metro string // code of the metro it is in, "" if unknown
}

// Metro is one metropolitan area.
type Metro struct {
	Code string
	Name string
}

// IsMetro reports whether code is a metro of the catalogue.
func (c *Catalogue) IsMetro(code string) bool {
	_, ok := slices.BinarySearchFunc(c.Metros, code, func(m Metro, s string) int { return cmp.Compare(m.Code, s) })
	return ok
}

// IsFacility reports whether code is a facility of the catalogue.
func (c *Catalogue) IsFacility(code string) bool {
	_, ok := slices.BinarySearchFunc(c.Facilities, code, func(f Facility, s string) int { return cmp.Compare(f.Code, s) })
	return ok
}

// Plan returns the plan with the slug, if the catalogue has it.
func (c *Catalogue) Plan(slug string) (Plan, bool) {
	i, ok := slices.BinarySearchFunc(c.Plans, slug, func(p Plan, s string) int { return cmp.Compare(p.Slug, s) })
	if !ok {
		return Plan{}, false
	}
	return c.Plans[i], true
}

// catalogueCache fetches the catalogue once per Client. A failed fetch is
// not cached: the next call tries again.
type catalogueCache struct {
	mu  sync.Mutex // held while fetching, so only one fetch runs
	cat atomic.Pointer[Catalogue]
}

func (cc *catalogueCache) loaded() *Catalogue { return cc.cat.Load() }

// Catalogue returns the plans, facilities and metros, fetched with three
// concurrent requests on the first call and cached for the Client's life.
func (c *Client) Catalogue(ctx context.Context) (*Catalogue, error) {
	c.cat.mu.Lock()
	defer c.cat.mu.Unlock()
	if cat := c.cat.loaded(); cat != nil {
		return cat, nil
	}
	var (
		wg                    sync.WaitGroup
		plans                 []packngo.Plan
		facs                  []packngo.Facility
		metros                []packngo.Metro
		errPlan, errFac, errM error
	)
	wg.Go(func() {
		pc, err := c.api(ctx)
		if err == nil {
			plans, _, err = pc.Plans.List(nil)
		}
		errPlan = err
	})
	wg.Go(func() {
		pc, err := c.api(ctx)
		if err == nil {
			facs, _, err = pc.Facilities.List(nil)
		}
		errFac = err
	})
	wg.Go(func() {
		pc, err := c.api(ctx)
		if err == nil {
			metros, _, err = pc.Metros.List(nil)
		}
		errM = err
	})
	wg.Wait()
	for _, e := range []struct {
		op  string
		err error
	}{{"list plans", errPlan}, {"list facilities", errFac}, {"list metros", errM}} {
		if e.err != nil {
			return nil, c.apiError(e.op, "", "", e.err, false)
		}
	}
	cat := &Catalogue{}
	for _, p := range plans {
		if p.Slug == "" {
			continue
		}
		pl := Plan{Slug: p.Slug, Name: p.Name, Class: p.Class, Legacy: p.Legacy}
		for _, f := range p.AvailableIn {
			if f.Code != "" {
				pl.Facilities = append(pl.Facilities, f.Code)
			}
		}
		for _, m := range p.AvailableInMetros {
			if m.Code != "" {
				pl.Metros = append(pl.Metros, m.Code)
			}
		}
		slices.Sort(pl.Facilities)
		slices.Sort(pl.Metros)
		cat.Plans = append(cat.Plans, pl)
	}
	for _, f := range facs {
		if f.Code == "" {
			continue
		}
		fa := Facility{Code: f.Code, Name: f.Name}
		if f.Metro != nil {
			fa.Metro = f.Metro.Code
		}
		cat.Facilities = append(cat.Facilities, fa)
	}
	for _, m := range metros {
		if m.Code != "" {
			cat.Metros = append(cat.Metros, Metro{Code: m.Code, Name: m.Name})
		}
	}
	slices.SortFunc(cat.Plans, func(a, b Plan) int { return cmp.Compare(a.Slug, b.Slug) })
	slices.SortFunc(cat.Facilities, func(a, b Facility) int { return cmp.Compare(a.Code, b.Code) })
	slices.SortFunc(cat.Metros, func(a, b Metro) int { return cmp.Compare(a.Code, b.Code) })
	c.cat.cat.Store(cat)
	return cat, nil
}

// isMetro tells whether a zone is a metro code or a facility code: from
// the catalogue if it was fetched already, else by form (metro codes have
// two letters, facility codes a digit after three letters: am vs ams1).
func (c *Client) isMetro(zone string) bool {
	if cat := c.cat.loaded(); cat != nil {
		switch {
		case cat.IsMetro(zone):
			return true
		case cat.IsFacility(zone):
			return false
		}
	}
	return len(zone) == 2
}

// Need is a number of devices of one machine type wanted in one zone.
type Need struct {
	Zone    string // facility or metro code
	Machine string // plan slug
}

// capacityServer is one line of a capacity check. The API describes
// quantity as a string, where packngo sends a number.
type capacityServer struct {
	Facility  string `json:"facility,omitempty"`
	Metro     string `json:"metro,omitempty"`
	Plan      string `json:"plan"`
	Quantity  string `json:"quantity"`
	Available *bool  `json:"available,omitempty"`
}

type capacityBody struct {
	Servers []capacityServer `json:"servers"`
}

// CheckCapacity asks the service whether it can deliver the devices a plan
// creates (POST capacity for facilities, capacity/metros for metros) and
// returns one warning per zone and machine it cannot, e.g.
// `no capacity for 3 × c3.small.x86 in ams1`. Whether a warning stops the
// plan is the caller's choice. The checks only read, so they are retried
// like GETs.
func (c *Client) CheckCapacity(ctx context.Context, needs map[Need]int) ([]string, error) {
	var metro, fac []capacityServer
	keys := make([]Need, 0, len(needs))
	for k, n := range needs {
		if n > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b Need) int {
		return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.Machine, b.Machine))
	})
	for _, k := range keys {
		s := capacityServer{Plan: k.Machine, Quantity: strconv.Itoa(needs[k])}
		if c.isMetro(k.Zone) {
			s.Metro = k.Zone
			metro = append(metro, s)
		} else {
			s.Facility = k.Zone
			fac = append(fac, s)
		}
	}
	var warnings []string
	for _, batch := range []struct {
		path    string
		servers []capacityServer
	}{{"capacity", fac}, {"capacity/metros", metro}} {
		if len(batch.servers) == 0 {
			continue
		}
		w, err := c.checkCapacity(ctx, batch.path, batch.servers)
		if err != nil {
			return nil, err
		}
		warnings = append(warnings, w...)
	}
	return warnings, nil
}

func (c *Client) checkCapacity(ctx context.Context, path string, servers []capacityServer) ([]string, error) {
	pc, err := c.api(withRetryClass(ctx, classIdempotent))
	if err != nil {
		return nil, c.apiError("check "+path, "", "", err, false)
	}
	req, err := pc.NewRequest(http.MethodPost, path, capacityBody{Servers: servers})
	if err != nil {
		return nil, c.apiError("check "+path, "", "", err, false)
	}
	var out capacityBody
	if _, err := pc.Do(req, &out); err != nil {
		return nil, c.apiError("check "+path, "", "", err, false)
	}
	var warnings []string
	for i, s := range out.Servers {
		if s.Available == nil || *s.Available {
			continue
		}
		// Echoed fields may be missing: fall back to what was asked.
		zone, plan, qty := cmp.Or(s.Metro, s.Facility), s.Plan, s.Quantity
		if i < len(servers) {
			zone = cmp.Or(zone, servers[i].Metro, servers[i].Facility)
			plan = cmp.Or(plan, servers[i].Plan)
			qty = cmp.Or(qty, servers[i].Quantity)
		}
		warnings = append(warnings, fmt.Sprintf("no capacity for %s × %s in %s", qty, plan, zone))
	}
	return warnings, nil
}
