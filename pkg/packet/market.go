package packet

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"sync"

	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// reservationPage is one page of the project's hardware reservations,
// decoded here: packngo's own paging follows hrefs that repeat /metal/v1.
type reservationPage struct {
	HardwareReservations []struct {
		ID            string `json:"id"`
		Provisionable bool   `json:"provisionable"`
		Plan          struct {
			Slug string `json:"slug"`
		} `json:"plan"`
		Facility struct {
			Code  string    `json:"code"`
			Metro *codeOnly `json:"metro"`
		} `json:"facility"`
		Device *struct {
			ID string `json:"id"`
		} `json:"device"`
	} `json:"hardware_reservations"`
	Meta struct {
		LastPage int `json:"last_page"`
	} `json:"meta"`
}

// spotPrices is GET /market/spot/prices/metros.
type spotPrices struct {
	SpotMarketPrices map[string]map[string]struct {
		Price float64 `json:"price"`
	} `json:"spot_market_prices"`
}

// Market fetches what need asks for: the project's reservations and the
// spot prices per metro, concurrently (more pages only with more than
// 1,000 reservations). A fleet that uses neither costs no request; plan
// prices come with the catalogue.
func (c *Client) Market(ctx context.Context, need planner.MarketNeed) (planner.Market, error) {
	var (
		wg         sync.WaitGroup
		m          planner.Market
		errR, errS error
		spot       spotPrices
	)
	get := func(path string, v any) error {
		pc, release, err := c.api(ctx)
		defer release()
		if err != nil {
			return err
		}
		req, err := pc.NewRequest(http.MethodGet, path, nil)
		if err == nil {
			_, err = pc.Do(req, v)
		}
		return err
	}
	if need.Reservations {
		wg.Go(func() { m.Reservations, errR = c.reservations(get) })
	}
	if need.Spot {
		wg.Go(func() { errS = get("market/spot/prices/metros", &spot) })
	}
	wg.Wait()
	for _, e := range []struct {
		op  string
		err error
	}{{"list hardware reservations", errR}, {"list spot prices", errS}} {
		if e.err != nil {
			return planner.Market{}, c.apiError(e.op, "", "", e.err, false)
		}
	}
	if need.Spot {
		m.Spot = map[planner.SpotKey]float64{}
	}
	for metro, byPlan := range spot.SpotMarketPrices {
		for plan, p := range byPlan {
			m.Spot[planner.SpotKey{Metro: metro, Plan: plan}] = p.Price
		}
	}
	return m, nil
}

// reservations pages through the project's hardware reservations.
func (c *Client) reservations(get func(string, any) error) ([]planner.Reservation, error) {
	var out []planner.Reservation
	for page := 1; ; page++ {
		var rp reservationPage
		if err := get(fmt.Sprintf("projects/%s/hardware-reservations?page=%d&per_page=1000", c.project, page), &rp); err != nil {
			return nil, err
		}
		for _, r := range rp.HardwareReservations {
			x := planner.Reservation{ID: r.ID, Plan: r.Plan.Slug, Facility: r.Facility.Code, Provisionable: r.Provisionable}
			if r.Facility.Metro != nil {
				x.Metro = r.Facility.Metro.Code
			}
			if x.Metro == "" {
				if cat := c.cat.loaded(); cat != nil {
					x.Metro = cat.MetroOf(x.Facility)
				}
			}
			if r.Device != nil {
				x.Device = r.Device.ID
			}
			out = append(out, x)
		}
		if page >= rp.Meta.LastPage {
			return out, nil
		}
	}
}

// hardwareRequest sets the reservation of a create. The executor narrows
// a reserved device to the one reservation the plan assigned; a device
// still holding a pool (a plan made without reservation data) asks for the
// next available one.
func hardwareRequest(req *packngo.DeviceCreateRequest, h spec.Hardware) {
	switch r := h.Reservation; {
	case len(r.IDs) == 1:
		req.HardwareReservationID = r.IDs[0]
	case r.Reserved():
		req.HardwareReservationID = spec.NextAvailable
	}
}

// spotCreate is a create with spot_price_max as a number: packngo's field
// is tagged ",string" and sends "0.45", which the API description does
// not allow. The outer field wins over the embedded one.
type spotCreate struct {
	*packngo.DeviceCreateRequest
	SpotInstance bool    `json:"spot_instance"`
	SpotPriceMax float64 `json:"spot_price_max"`
}

// createDevice sends the create, spot creates with a numeric bid. The
// answer is the whole new device (plan, facility, metro, events...), of
// which toLive reads a dozen fields: it is taken raw from packngo and
// decoded like a listed device (listedDevice, decodePage), which costs a
// fifth of decoding it into packngo.Device, once per created device.
func createDevice(pc *packngo.Client, req *packngo.DeviceCreateRequest, h spec.Hardware) (planner.Live, error) {
	var body any = req
	if h.Spot() {
		body = spotCreate{req, true, h.SpotMaxPrice}
	}
	var raw bytes.Buffer
	// The answer leaves out what the lighter listings leave out: the
	// create's Live carries no addresses (status lists them) and its
	// ports are never read from it.
	p := path.Join("/projects", req.ProjectID, "devices") + "?" + url.Values{"exclude": {excludeForPlan}}.Encode()
	if _, err := pc.DoRequest(http.MethodPost, p, body, &raw); err != nil {
		return planner.Live{}, err
	}
	var d listedDevice
	if err := decodePage(raw.Bytes(), &d); err != nil {
		return planner.Live{}, err
	}
	return d.live(), nil
}

// live copies where the device came from into l.
func (h listedHardware) live(l *planner.Live) {
	if h.HardwareReservation != nil {
		l.Reservation = h.HardwareReservation.ID
	}
	l.Spot, l.SpotMaxPrice = h.SpotInstance, h.SpotPriceMax
	if h.TerminationTime != nil {
		l.TerminationTime = h.TerminationTime.Time
	}
}

// listedHardware is the reservation and spot part of a listed device.
type listedHardware struct {
	HardwareReservation *struct {
		ID string `json:"id"`
	} `json:"hardware_reservation"`
	SpotInstance    bool               `json:"spot_instance"`
	SpotPriceMax    float64            `json:"spot_price_max"`
	TerminationTime *packngo.Timestamp `json:"termination_time"`
}

// hardwareOf is the reservation and spot part of a device packngo decoded.
func hardwareOf(pd *packngo.Device) listedHardware {
	var h listedHardware
	if pd.HardwareReservation != nil {
		h.HardwareReservation = &struct {
			ID string `json:"id"`
		}{pd.HardwareReservation.ID}
	}
	h.SpotInstance, h.SpotPriceMax, h.TerminationTime = pd.SpotInstance, pd.SpotPriceMax, pd.TerminationTime
	return h
}
