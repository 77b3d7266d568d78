package packetsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ReservationSeed asks for Count hardware reservations of Plan in Zone (a
// facility code, or a metro code meaning its first facility). Their ids
// derive from plan, facility and position, so the same seeds give the same
// ids after a restart.
type ReservationSeed struct {
	Plan  string
	Zone  string
	Count int
}

// ParseReservationSeed parses the --reservations form plan:zone:count.
func ParseReservationSeed(v string) (ReservationSeed, error) {
	parts := strings.Split(v, ":")
	if len(parts) != 3 {
		return ReservationSeed{}, fmt.Errorf("reservation seed %q: want plan:zone:count", v)
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n < 1 {
		return ReservationSeed{}, fmt.Errorf("reservation seed %q: count must be a positive integer", v)
	}
	return ReservationSeed{Plan: parts[0], Zone: parts[1], Count: n}, nil
}

// reservation is one reserved server of the project. It is held by the
// last device created on it until that device has finished
// deprovisioning, like the service: a failed device blocks it until it is
// deleted and gone.
type reservation struct {
	id      uuid
	plan    *plan
	fac     *facility
	created time.Time
	dev     *device // last holder; nil if never used
}

// provisionable reports whether a create may take r at now.
func (r *reservation) provisionable(now time.Time, deprov time.Duration) bool {
	return r.dev == nil || r.dev.goneAt(now, deprov)
}

// hardware holds the reservations and the spot market. Reservations and
// the per-device links are guarded by Sim.mu; prices by the market's mutex.
type hardware struct {
	resv   []*reservation
	resvBy map[uuid]*reservation
	devRes map[uuid]*reservation // device id -> reservation it was created on
	spot   map[uuid]*spotBid     // device id -> its bid
	market *market
	// failNext is how many of the next creates end failed (FailNextCreates).
	failNext int
}

// FailNextCreates makes the next n created devices end in state failed,
// for tests that need one failure at a known point (FailProvisionRate is
// a probability).
func (s *Sim) FailNextCreates(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hw.failNext = n
}

// newHardware seeds the reservations and the market of s.
func newHardware(s *Sim) (*hardware, error) {
	hw := &hardware{resvBy: map[uuid]*reservation{}, devRes: map[uuid]*reservation{}, spot: map[uuid]*spotBid{}}
	for _, rs := range s.cfg.Reservations {
		p := s.cat.planBy[rs.Plan]
		f := s.facilityOf(rs.Zone)
		if p == nil || f == nil || !p.supports(f.Code) || rs.Count < 1 {
			return hw, fmt.Errorf("reservation seed %s:%s:%d: unknown plan or zone, plan not sold there, or count below 1", rs.Plan, rs.Zone, rs.Count)
		}
		for range rs.Count {
			r := &reservation{id: nameID(fmt.Sprintf("reservation:%s:%s:%d", p.Slug, f.Code, len(hw.resv))), plan: p, fac: f, created: projectCreated}
			hw.resv = append(hw.resv, r)
			hw.resvBy[r.id] = r
		}
	}
	hw.market = newMarket(s)
	return hw, nil
}

// facilityOf resolves a facility code, or a metro code to its first
// facility.
func (s *Sim) facilityOf(zone string) *facility {
	zone = strings.ToLower(zone)
	if f := s.cat.facBy[zone]; f != nil {
		return f
	}
	if m := s.cat.metroBy[zone]; m != nil {
		for _, f := range s.cat.facilities {
			if f.Metro == m {
				return f
			}
		}
	}
	return nil
}

// claimReservation resolves in.HardwareReservationID (a UUID or
// next-available) for a create placed by pl and links the reservation to
// the device about to be created. The caller holds s.mu. A nil result
// with a nil error means the create uses no reservation.
func (s *Sim) claimReservation(in *createInput, pl placement, now time.Time) (*reservation, error) {
	want := strings.ToLower(in.HardwareReservationID)
	if want == "" {
		return nil, nil
	}
	fits := func(r *reservation) bool {
		if r.plan != pl.plan {
			return false
		}
		for _, f := range pl.candidates {
			if f == r.fac {
				return true
			}
		}
		return false
	}
	if want == "next-available" {
		for _, r := range s.hw.resv {
			if fits(r) && r.provisionable(now, s.cfg.DeprovisionTime) {
				return r, nil
			}
		}
		return nil, errReservation{fmt.Sprintf("No available hardware reservations of plan %s in %s", pl.plan.Slug, pl.where)}
	}
	id, ok := parseUUID(want)
	r := s.hw.resvBy[id]
	switch {
	case !ok || r == nil:
		return nil, errReservation{fmt.Sprintf("Hardware reservation %s was not found", in.HardwareReservationID)}
	case !fits(r):
		return nil, errReservation{fmt.Sprintf("Hardware reservation %s is for plan %s in %s, not %s in %s", r.id, r.plan.Slug, r.fac.Code, pl.plan.Slug, pl.where)}
	case !r.provisionable(now, s.cfg.DeprovisionTime):
		return nil, errReservation{fmt.Sprintf("Hardware reservation %s is not provisionable: it holds device %s", r.id, r.dev.id)}
	}
	return r, nil
}

// errReservation is a create the service refuses because of its
// reservation (422, not the 503 of a full facility).
type errReservation struct{ msg string }

func (e errReservation) Error() string { return e.msg }

// createStatus is the HTTP status a failed addDevice answers with.
func createStatus(err error) int {
	switch err.(type) {
	case errReservation, errSpot:
		return http.StatusUnprocessableEntity
	}
	return http.StatusServiceUnavailable
}

// reservationJSON is the HardwareReservation document.
type reservationJSON struct {
	ID            string          `json:"id"`
	ShortID       string          `json:"short_id"`
	Href          string          `json:"href"`
	CreatedAt     string          `json:"created_at"`
	Provisionable bool            `json:"provisionable"`
	Spare         bool            `json:"spare"`
	NeedOfService bool            `json:"need_of_service"`
	Plan          json.RawMessage `json:"plan"`
	Facility      json.RawMessage `json:"facility"`
	Project       json.RawMessage `json:"project"`
	Device        *refJSON        `json:"device,omitempty"`
}

// refJSON is a collapsed reference with its id.
type refJSON struct {
	ID   string `json:"id"`
	Href string `json:"href"`
}

func reservationHref(id string) string { return "/metal/v1/hardware-reservations/" + id }

// renderReservation builds r's document; the caller holds s.mu.
func (s *Sim) renderReservation(r *reservation, now time.Time) reservationJSON {
	id := r.id.String()
	j := reservationJSON{
		ID: id, ShortID: id[:8], Href: reservationHref(id), CreatedAt: fmtTime(r.created),
		Provisionable: r.provisionable(now, s.cfg.DeprovisionTime),
		Plan:          r.plan.json, Facility: r.fac.json, Project: s.projectHrefJSON(),
	}
	if r.dev != nil && !r.dev.goneAt(now, s.cfg.DeprovisionTime) {
		did := r.dev.id.String()
		j.Device = &refJSON{ID: did, Href: deviceHref(did)}
	}
	return j
}

// listReservations answers GET /projects/{id}/hardware-reservations.
func (s *Sim) listReservations(w http.ResponseWriter, r *http.Request, pid string) {
	if !s.checkProject(w, pid) {
		return
	}
	q := r.URL.Query()
	page, perPage, ok := paging(w, q)
	if !ok {
		return
	}
	only := q.Get("provisionable") == "only"
	now := s.now()
	s.mu.RLock()
	all := make([]reservationJSON, 0, len(s.hw.resv))
	for _, x := range s.hw.resv {
		if j := s.renderReservation(x, now); !only || j.Provisionable {
			all = append(all, j)
		}
	}
	s.mu.RUnlock()
	from := min(len(all), (page-1)*perPage)
	to := min(len(all), from+perPage)
	writeJSON(w, http.StatusOK, map[string]any{
		"hardware_reservations": all[from:to],
		"meta":                  pageMeta("/projects/"+s.project+"/hardware-reservations", extraQuery(r.URL.RawQuery), page, perPage, len(all)),
	})
}

// getReservation answers GET /hardware-reservations/{id}.
func (s *Sim) getReservation(w http.ResponseWriter, _ *http.Request, id string) {
	u, ok := parseUUID(strings.ToLower(id))
	now := s.now()
	s.mu.RLock()
	res := s.hw.resvBy[u]
	var j reservationJSON
	if ok && res != nil {
		j = s.renderReservation(res, now)
	}
	s.mu.RUnlock()
	if !ok || res == nil {
		writeErr(w, http.StatusNotFound, "Not found")
		return
	}
	writeJSON(w, http.StatusOK, j)
}

// Reservation describes one hardware reservation for tests and tools.
type Reservation struct {
	ID, Plan, Facility string
	Provisionable      bool
	Device             string // the holding device ("" = none)
}

// Reservations lists the project's reservations in seed order.
func (s *Sim) Reservations() []Reservation {
	now := s.now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Reservation, 0, len(s.hw.resv))
	for _, r := range s.hw.resv {
		j := s.renderReservation(r, now)
		x := Reservation{ID: j.ID, Plan: r.plan.Slug, Facility: r.fac.Code, Provisionable: j.Provisionable}
		if j.Device != nil {
			x.Device = j.Device.ID
		}
		out = append(out, x)
	}
	return out
}

// ReservationOf returns the id of the reservation device id was created on
// ("" = none).
func (s *Sim) ReservationOf(id string) string {
	u, _ := parseUUID(strings.ToLower(id))
	s.mu.RLock()
	defer s.mu.RUnlock()
	if r := s.hw.devRes[u]; r != nil {
		return r.id.String()
	}
	return ""
}

// attachHardware links a new device to its reservation and bid; the
// caller holds s.mu.
func (s *Sim) attachHardware(d *device, r *reservation, bid *spotBid) {
	if r != nil {
		r.dev = d
		s.hw.devRes[d.id] = r
		s.capUsed[capKey{d.fac.Code, d.plan.Slug}]-- // a reserved server is outside the shared pool
	}
	if s.hw.failNext > 0 {
		s.hw.failNext--
		d.failProv = true
	}
	if bid != nil {
		bid.metro = d.fac.Metro.Code
		s.hw.spot[d.id] = bid
	}
}

// renderHardware fills the reservation and spot fields of d's document;
// the caller holds at least a read lock.
func (s *Sim) renderHardware(d *device, j *deviceJSON) {
	if r := s.hw.devRes[d.id]; r != nil {
		id := r.id.String()
		j.HardwareReservation = &refJSON{ID: id, Href: reservationHref(id)}
	}
	if b := s.hw.spot[d.id]; b != nil {
		j.SpotInstance = true
		j.SpotPriceMax = b.max
		if !b.termAt.IsZero() {
			j.TerminationTime = fmtTime(b.termAt)
		}
	}
}

// reservationRoutes is the routing hook for reservation paths.
func (s *Sim) reservationRoutes(parts []string) (tmpl, id string, h map[string]apiHandler) {
	switch {
	case len(parts) == 3 && parts[0] == "projects" && parts[2] == "hardware-reservations":
		return "/projects/{id}/hardware-reservations", parts[1], map[string]apiHandler{"GET": s.listReservations}
	case len(parts) == 2 && parts[0] == "hardware-reservations":
		return "/hardware-reservations/{id}", parts[1], map[string]apiHandler{"GET": s.getReservation}
	case len(parts) == 3 && parts[0] == "market" && parts[1] == "spot" && parts[2] == "prices":
		return "/market/spot/prices", "", map[string]apiHandler{"GET": s.spotPrices(false)}
	case len(parts) == 4 && strings.Join(parts, "/") == "market/spot/prices/metros":
		return "/market/spot/prices/metros", "", map[string]apiHandler{"GET": s.spotPrices(true)}
	}
	return "", "", nil
}
