package packetsim

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// createInput is the union of DeviceCreateInMetroInput and
// DeviceCreateInFacilityInput plus the batch fields.
type createInput struct {
	Hostname        string          `json:"hostname"`
	Hostnames       []string        `json:"hostnames"`
	Quantity        int             `json:"quantity"`
	Description     string          `json:"description"`
	Plan            string          `json:"plan"`
	Metro           json.RawMessage `json:"metro"`
	Facility        json.RawMessage `json:"facility"`
	OperatingSystem string          `json:"operating_system"`
	BillingCycle    string          `json:"billing_cycle"`
	AlwaysPXE       bool            `json:"always_pxe"`
	IPXEScriptURL   string          `json:"ipxe_script_url"`
	Userdata        string          `json:"userdata"`
	Tags            []string        `json:"tags"`
	Locked          bool            `json:"locked"`
	Customdata      json.RawMessage `json:"customdata"`
	// Reservations and spot market (reservations.go, market.go).
	HardwareReservationID string    `json:"hardware_reservation_id"`
	SpotInstance          bool      `json:"spot_instance"`
	SpotPriceMax          flexFloat `json:"spot_price_max"`
}

// placement is a validated create: where and what.
type placement struct {
	plan       *plan
	candidates []*facility // in preference order
	where      string      // the location as given, for messages
	metro      bool
}

func isIPXE(userdata string) bool {
	return strings.HasPrefix(strings.TrimLeft(userdata, " \t\r\n"), "#!ipxe")
}

// validateCreate checks a create like the service and returns every
// problem found.
func (s *Sim) validateCreate(in *createInput) (placement, []string) {
	var pl placement
	var errs []string
	if in.Plan == "" {
		errs = append(errs, "plan is required")
	} else if p := s.cat.planBy[in.Plan]; p == nil {
		errs = append(errs, fmt.Sprintf("Plan %q is not a valid plan", in.Plan))
	} else {
		pl.plan = p
	}
	errs = append(errs, s.placeLocation(in, &pl)...)
	switch {
	case in.OperatingSystem == "":
		errs = append(errs, "operating_system is required")
	case s.cat.osJSON[in.OperatingSystem] == nil:
		errs = append(errs, fmt.Sprintf("Operating system %q is not a valid operating system", in.OperatingSystem))
	case in.OperatingSystem == "custom_ipxe" && in.IPXEScriptURL == "" && !isIPXE(in.Userdata):
		errs = append(errs, "ipxe_script_url is required for custom_ipxe unless userdata starts with #!ipxe")
	}
	if pl.plan != nil && s.cat.osJSON[in.OperatingSystem] != nil && !slices.Contains(s.cat.osOn[in.OperatingSystem], pl.plan.Slug) {
		errs = append(errs, fmt.Sprintf("Operating system %s is not provisionable on plan %s", in.OperatingSystem, pl.plan.Slug))
	}
	if in.IPXEScriptURL != "" {
		if u, err := url.Parse(in.IPXEScriptURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Sprintf("ipxe_script_url %q must be an http(s) URL", in.IPXEScriptURL))
		}
	}
	switch in.BillingCycle {
	case "", "hourly", "daily", "monthly", "yearly":
	default:
		errs = append(errs, fmt.Sprintf("billing_cycle %q must be one of hourly, daily, monthly, yearly", in.BillingCycle))
	}
	for _, t := range in.Tags {
		if t == "" {
			errs = append(errs, "tags may not be empty")
			break
		}
	}
	if pl.plan != nil && len(pl.candidates) > 0 && !slices.ContainsFunc(pl.candidates, func(f *facility) bool { return pl.plan.supports(f.Code) }) {
		errs = append(errs, fmt.Sprintf("Plan %s is not available in %s", pl.plan.Slug, pl.where))
	}
	return pl, errs
}

// errNoCapacity is the service's answer when no facility has room.
type errNoCapacity struct{ where string }

func (e errNoCapacity) Error() string {
	return "There aren't available servers in " + e.where + " for that plan"
}

// addDevice creates one device; the caller holds s.mu.
func (s *Sim) addDevice(in *createInput, pl placement, hostname string, now time.Time) (*device, error) {
	var fac *facility
	resv, err := s.claimReservation(in, pl, now)
	if err != nil {
		return nil, err
	}
	for _, f := range pl.candidates {
		if resv != nil { // a reserved server is outside the shared pool
			fac = resv.fac
			break
		}
		if pl.plan.supports(f.Code) && s.capUsed[capKey{f.Code, pl.plan.Slug}] < s.cfg.Capacity {
			fac = f
			break
		}
	}
	if fac == nil {
		return nil, errNoCapacity{pl.where}
	}
	bid, err := s.placeBid(in, pl, fac, resv)
	if err != nil {
		return nil, err
	}
	id := s.freshID()
	if hostname == "" {
		hostname = "sim-" + id.String()[:8]
	}
	billing := in.BillingCycle
	if billing == "" {
		billing = "hourly"
	}
	s.seq++
	d := &device{
		id: id, seq: s.seq, hostname: hostname, description: in.Description,
		tags: slices.Clone(in.Tags), plan: pl.plan, fac: fac, os: in.OperatingSystem,
		alwaysPXE: in.AlwaysPXE, ipxeURL: in.IPXEScriptURL, userdata: in.Userdata,
		billing: billing, locked: in.Locked, customdata: cloneRaw(in.Customdata),
		created: now, updated: now,
		phase: phProvision, phaseAt: now, phaseDur: s.cfg.ProvisionTime,
		failProv: s.chance(s.cfg.FailProvisionRate),
	}
	s.insert(d)
	s.attachHardware(d, resv, bid)
	if d.failProv {
		s.stats.fault(FaultFailedProvision)
		// Recorded ahead; listed once the device shows failed.
		d.events = append(d.events, event{id: s.newID(), at: now.Add(d.phaseDur), typ: eventProvisionFailed,
			body: "Provisioning failed: the machine did not pass its hardware checks (simulated fault)"})
	}
	if d.os == "custom_ipxe" && !d.failProv {
		s.scheduleBoot(d, now.Add(d.phaseDur), false)
	}
	s.stats.created(1)
	s.markDirty()
	return d, nil
}

// insert registers d; the caller holds s.mu.
func (s *Sim) insert(d *device) {
	s.devs[d.id] = d
	s.order = append(s.order, d)
	if d.deletedAt.IsZero() {
		s.capUsed[capKey{d.fac.Code, d.plan.Slug}]++
	}
}

func cloneRaw(b json.RawMessage) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	return slices.Clone(b)
}

// placeLocation resolves the metro or facility of a create into candidate
// facilities in preference order.
func (s *Sim) placeLocation(in *createInput, pl *placement) []string {
	var errs []string
	hasMetro := len(in.Metro) > 0 && string(in.Metro) != "null"
	hasFac := len(in.Facility) > 0 && string(in.Facility) != "null"
	switch {
	case hasMetro && hasFac:
		errs = append(errs, "Only one of metro or facility may be specified")
	case hasMetro:
		var code string
		if err := json.Unmarshal(in.Metro, &code); err != nil {
			errs = append(errs, "metro must be a string")
			break
		}
		pl.metro, pl.where = true, code
		if code == "any" {
			pl.candidates = s.cat.facilities
		} else if m := s.cat.metroBy[strings.ToLower(code)]; m == nil {
			errs = append(errs, fmt.Sprintf("Metro %q is not a valid metro", code))
		} else {
			for _, f := range s.cat.facilities {
				if f.Metro == m {
					pl.candidates = append(pl.candidates, f)
				}
			}
		}
	case hasFac:
		var codes []string
		var one string
		if err := json.Unmarshal(in.Facility, &one); err == nil {
			codes = []string{one}
		} else if err := json.Unmarshal(in.Facility, &codes); err != nil {
			errs = append(errs, "facility must be a string or an array of strings")
			break
		}
		pl.where = strings.Join(codes, ",")
		for _, c := range codes {
			if c == "any" {
				pl.candidates = append(pl.candidates, s.cat.facilities...)
			} else if f := s.cat.facBy[strings.ToLower(c)]; f == nil {
				errs = append(errs, fmt.Sprintf("Facility %q is not a valid facility", c))
			} else {
				pl.candidates = append(pl.candidates, f)
			}
		}
		if len(codes) == 0 {
			errs = append(errs, "Facility can't be blank")
		}
	default:
		errs = append(errs, "Either metro or facility is required")
	}
	return errs
}
