package packet

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// catalogueCache fetches the catalogue once per Client. A failed fetch is
// not cached: the next call tries again.
type catalogueCache struct {
	mu  sync.Mutex // held while fetching, so only one fetch runs
	cat atomic.Pointer[planner.Catalogue]
}

func (cc *catalogueCache) loaded() *planner.Catalogue { return cc.cat.Load() }

// ref is a catalogue reference as the API writes it: sometimes expanded
// (code, id), sometimes only an href ending in the id.
type ref struct {
	ID   string `json:"id"`
	Code string `json:"code"`
	Href string `json:"href"`
}

func (r ref) id() string {
	if r.ID != "" {
		return r.ID
	}
	return path.Base(r.Href)
}

// planList is the plans listing. packngo's Plan decodes a location given
// only as an href into an empty value, so plans are decoded here.
type planList struct {
	Plans []struct {
		Slug  string `json:"slug"`
		Specs struct {
			Cpus []struct {
				Type string `json:"type"`
			} `json:"cpus"`
			Nics []struct {
				Count int `json:"count"`
			} `json:"nics"`
		} `json:"specs"`
		AvailableIn       []ref `json:"available_in"`
		AvailableInMetros []ref `json:"available_in_metros"`
		Pricing           struct {
			Hour float64 `json:"hour"`
		} `json:"pricing"`
	} `json:"plans"`
}

// Catalogue returns the plans, facilities and metros the service offers,
// fetched with three concurrent requests on the first call and cached for
// the Client's life.
func (c *Client) Catalogue(ctx context.Context) (planner.Catalogue, error) {
	c.cat.mu.Lock()
	defer c.cat.mu.Unlock()
	if cat := c.cat.loaded(); cat != nil {
		return *cat, nil
	}
	var (
		wg                    sync.WaitGroup
		plans                 planList
		facs                  []packngo.Facility
		metros                []packngo.Metro
		errPlan, errFac, errM error
	)
	wg.Go(func() {
		pc, release, err := c.api(ctx)
		defer release()
		if err != nil {
			errPlan = err
			return
		}
		req, err := pc.NewRequest(http.MethodGet, "plans", nil)
		if err == nil {
			_, err = pc.Do(req, &plans)
		}
		errPlan = err
	})
	wg.Go(func() {
		pc, release, err := c.api(ctx)
		defer release()
		if err == nil {
			facs, _, err = pc.Facilities.List(nil)
		}
		errFac = err
	})
	wg.Go(func() {
		pc, release, err := c.api(ctx)
		defer release()
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
			return planner.Catalogue{}, c.apiError(e.op, "", "", e.err, false)
		}
	}
	cat := buildCatalogue(plans, facs, metros)
	c.cat.cat.Store(&cat)
	return cat, nil
}

// buildCatalogue joins the three listings: facilities and plans may name
// metros and facilities by id only.
func buildCatalogue(plans planList, facs []packngo.Facility, metros []packngo.Metro) planner.Catalogue {
	cat := planner.Catalogue{
		Plans:      map[string]planner.PlanInfo{},
		Facilities: map[string]string{},
		Metros:     map[string]bool{},
	}
	facByID := map[string]string{}
	metroByID := map[string]string{}
	for _, m := range metros {
		if m.Code != "" {
			cat.Metros[m.Code] = true
			metroByID[m.ID] = m.Code
		}
	}
	for _, f := range facs {
		if f.Code == "" {
			continue
		}
		facByID[f.ID] = f.Code
		metro := ""
		if f.Metro != nil {
			metro = cmp.Or(f.Metro.Code, metroByID[f.Metro.ID])
		}
		cat.Facilities[f.Code] = metro
	}
	for _, p := range plans.Plans {
		if p.Slug == "" {
			continue
		}
		info := planner.PlanInfo{Arch: archOfCPUs(p.Specs.Cpus), Ports: nicsOf(p.Specs.Nics), Price: p.Pricing.Hour}
		for _, r := range p.AvailableIn {
			if code := cmp.Or(r.Code, facByID[r.id()]); code != "" {
				info.Locations = append(info.Locations, code)
			}
		}
		for _, r := range p.AvailableInMetros {
			if code := cmp.Or(r.Code, metroByID[r.id()]); code != "" {
				info.Locations = append(info.Locations, code)
			}
		}
		slices.Sort(info.Locations)
		info.Locations = slices.Compact(info.Locations)
		cat.Plans[p.Slug] = info
	}
	return cat
}

// archOfCPUs reads an architecture from a plan's CPU descriptions, which
// is all the API says about it; "" when they do not tell.
func archOfCPUs(cpus []struct {
	Type string `json:"type"`
}) string {
	for _, cpu := range cpus {
		t := strings.ToLower(cpu.Type)
		switch {
		case strings.Contains(t, "arm") || strings.Contains(t, "ampere") || strings.Contains(t, "cavium") || strings.Contains(t, "aarch64"):
			return spec.ArchARM
		case strings.Contains(t, "intel") || strings.Contains(t, "amd") || strings.Contains(t, "x86"):
			return spec.ArchX86
		}
	}
	return ""
}

// isMetro tells whether a zone is a metro code or a facility code: from
// the catalogue if it was fetched already, else by form (metro codes have
// two letters, facility codes a digit after three letters: am vs ams1).
func (c *Client) isMetro(zone string) bool {
	if cat := c.cat.loaded(); cat != nil {
		if cat.Metros[zone] {
			return true
		}
		if _, ok := cat.Facilities[zone]; ok {
			return false
		}
	}
	return len(zone) == 2
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
func (c *Client) CheckCapacity(ctx context.Context, needs map[planner.Need]int) ([]string, error) {
	var metro, fac []capacityServer
	keys := make([]planner.Need, 0, len(needs))
	for k, n := range needs {
		if n > 0 {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b planner.Need) int {
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
	pc, release, err := c.api(withRetryClass(ctx, classIdempotent))
	defer release()
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
