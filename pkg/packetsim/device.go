package packetsim

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"time"
)

// phase is the lifecycle step a device is in; together with phaseAt and
// the configured durations it determines the visible state lazily.
type phase uint8

const (
	phProvision phase = iota // queued → provisioning → active | failed
	phReinstall              // reinstalling → active
	phPowerOff               // powering_off → inactive
	phPowerOn                // powering_on → active
	phActive                 // active (also seeded devices, reboots)
	phFailed                 // failed
	phInactive               // inactive
)

// User states a device posts (events of type user.<code>).
const (
	UserStateRunning   = "running"
	UserStateSucceeded = "succeeded"
	UserStateFailed    = "failed"
)

// eventProvisionFailed is the type of the event a failing provision ends with.
const eventProvisionFailed = "provisioning.failed"

// event is one device event, kept compact.
type event struct {
	id    uuid
	at    time.Time
	typ   string
	state string
	body  string
}

// device is one simulated machine. Slices are copy-on-write: readers may
// keep a snapshot's slices after releasing the lock.
type device struct {
	id          uuid
	seq         uint32
	hostname    string
	description string
	tags        []string
	plan        *plan
	fac         *facility
	os          string
	alwaysPXE   bool
	ipxeURL     string
	userdata    string
	billing     string
	locked      bool
	customdata  json.RawMessage
	created     time.Time
	updated     time.Time

	phase     phase
	phaseAt   time.Time
	phaseDur  time.Duration
	failProv  bool
	deletedAt time.Time
	gone      bool      // purged: no longer answers
	gen       uint32    // bumped by every lifecycle change; stale jobs compare it
	bootAt    time.Time // when the pending boot runs (zero: none pending)
	bootLocal bool      // the pending boot is from the (empty) local disk
	events    []event
	net       *netState // port state once a port call changed it (ports.go)
}

// state computes the visible state at now.
func (d *device) state(now time.Time, deprov time.Duration) string {
	if !d.deletedAt.IsZero() {
		return "deprovisioning"
	}
	el := now.Sub(d.phaseAt)
	switch d.phase {
	case phProvision:
		switch {
		case el < d.phaseDur/4:
			return "queued"
		case el < d.phaseDur:
			return "provisioning"
		case d.failProv:
			return "failed"
		}
		return "active"
	case phReinstall:
		if el < d.phaseDur {
			return "reinstalling"
		}
		return "active"
	case phPowerOff:
		if el < d.phaseDur {
			return "powering_off"
		}
		return "inactive"
	case phPowerOn:
		if el < d.phaseDur {
			return "powering_on"
		}
		return "active"
	case phFailed:
		return "failed"
	case phInactive:
		return "inactive"
	}
	return "active"
}

// goneAt reports whether a deleted device has finished deprovisioning.
func (d *device) goneAt(now time.Time, deprov time.Duration) bool {
	return d.gone || (!d.deletedAt.IsZero() && !now.Before(d.deletedAt.Add(deprov)))
}

// hasTag reports whether the device carries tag t.
func (d *device) hasTag(t string) bool {
	for _, x := range d.tags {
		if x == t {
			return true
		}
	}
	return false
}

// JSON shapes of the service (only what lkfleet and the spec need).
type hrefJSON struct {
	Href string `json:"href"`
}

type eventJSON struct {
	ID            string     `json:"id"`
	Type          string     `json:"type"`
	State         string     `json:"state,omitempty"`
	Body          string     `json:"body"`
	Interpolated  string     `json:"interpolated"`
	CreatedAt     string     `json:"created_at"`
	Href          string     `json:"href"`
	Relationships []hrefJSON `json:"relationships"`
}

type ipJSON struct {
	ID            string     `json:"id"`
	AddressFamily int        `json:"address_family"`
	Public        bool       `json:"public"`
	Management    bool       `json:"management"`
	Manageable    bool       `json:"manageable"`
	Enabled       bool       `json:"enabled"`
	GlobalIP      bool       `json:"global_ip"`
	Address       string     `json:"address"`
	Network       string     `json:"network"`
	Netmask       string     `json:"netmask"`
	Gateway       string     `json:"gateway"`
	CIDR          int        `json:"cidr"`
	CreatedAt     string     `json:"created_at"`
	Href          string     `json:"href"`
	AssignedTo    hrefJSON   `json:"assigned_to"`
	ParentBlock   parentJSON `json:"parent_block"`
}

// parentJSON is the block an address was taken from; devices get their
// own /31 (/127 for IPv6), so it is the address's own network.
type parentJSON struct {
	Network string `json:"network"`
	Netmask string `json:"netmask"`
	CIDR    int    `json:"cidr"`
	Href    string `json:"href"`
}

type deviceJSON struct {
	ID                     string          `json:"id"`
	ShortID                string          `json:"short_id"`
	Href                   string          `json:"href"`
	Hostname               string          `json:"hostname"`
	Description            string          `json:"description,omitempty"`
	State                  string          `json:"state"`
	CreatedAt              string          `json:"created_at"`
	UpdatedAt              string          `json:"updated_at"`
	Tags                   []string        `json:"tags"`
	BillingCycle           string          `json:"billing_cycle"`
	AlwaysPXE              bool            `json:"always_pxe"`
	IPXEScriptURL          string          `json:"ipxe_script_url,omitempty"`
	Userdata               string          `json:"userdata"`
	Locked                 bool            `json:"locked"`
	SpotInstance           bool            `json:"spot_instance"`
	NetworkFrozen          bool            `json:"network_frozen"`
	SOS                    string          `json:"sos"`
	ProvisioningPercentage *float64        `json:"provisioning_percentage,omitempty"`
	Customdata             json.RawMessage `json:"-"` // spliced in by appendJSON
	Plan                   json.RawMessage `json:"-"` // spliced in by appendJSON
	Facility               json.RawMessage `json:"-"` // spliced in by appendJSON
	Metro                  json.RawMessage `json:"-"` // spliced in by appendJSON
	OperatingSystem        json.RawMessage `json:"-"` // spliced in by appendJSON
	Project                json.RawMessage `json:"-"` // spliced in by appendJSON
	ProjectLite            json.RawMessage `json:"-"` // spliced in by appendJSON
	SSHKeys                json.RawMessage `json:"-"` // spliced in by appendJSON
	IPAddresses            []ipJSON        `json:"ip_addresses"`
	Actions                json.RawMessage `json:"-"` // spliced in by appendJSON
	ProvisioningEvents     []eventJSON     `json:"provisioning_events"`
	NetworkPorts           []portJSON      `json:"network_ports"`
	BondingMode            int             `json:"bonding_mode"`

	// Reservations and spot market (reservations.go).
	HardwareReservation *refJSON `json:"hardware_reservation,omitempty"`
	SpotPriceMax        float64  `json:"spot_price_max,omitempty"`
	TerminationTime     string   `json:"termination_time,omitempty"`
}

var (
	actionsJSON = mustJSON([]map[string]string{
		{"type": "power_on", "name": "Power On"}, {"type": "power_off", "name": "Power Off"},
		{"type": "reboot", "name": "Reboot"}, {"type": "reinstall", "name": "Reinstall"},
	})
	emptyObject = json.RawMessage("{}")
	emptyArray  = json.RawMessage("[]")
)

func deviceHref(id string) string { return "/metal/v1/devices/" + id }

// deviceCollapsed are the attributes of a device the service answers as
// {"href": ...} unless they are included.
var deviceCollapsed = map[string]bool{"project": true, "project_lite": true, "ssh_keys": true}

// appendDevice appends d's document at now, shaped by sh. The caller holds
// at least a read lock.
func (s *Sim) appendDevice(buf []byte, d *device, now time.Time, sh shaping) []byte {
	j := s.render(d, now)
	if sh.trivial(deviceCollapsed) {
		b, _ := j.appendJSON(buf) // cannot fail: plain strings and numbers
		return b
	}
	if sh.flat(deviceCollapsed) {
		b, _ := j.appendExcluded(buf, sh) // as above
		return b
	}
	j.Project, j.ProjectLite, j.SSHKeys = s.projectFullJSON(), s.projectLiteJSON(), s.sshKeysJSON(true)
	doc, _ := j.appendJSON(nil)
	return append(buf, sh.shapeRaw(doc, deviceCollapsed)...)
}

// deviceDoc is one device's document, shaped by sh.
func (s *Sim) deviceDoc(d *device, now time.Time, sh shaping) json.RawMessage {
	return s.appendDevice(nil, d, now, sh)
}

// render builds the JSON view of d at now with the default (collapsed)
// project and keys. The caller holds at least a read lock or owns a
// snapshot.
func (s *Sim) render(d *device, now time.Time) deviceJSON {
	id := d.id.String()
	href := deviceHref(id)
	st := d.state(now, s.cfg.DeprovisionTime)
	j := deviceJSON{
		ID: id, ShortID: id[:8], Href: href, Hostname: d.hostname, Description: d.description,
		State: st, CreatedAt: fmtTime(d.created), UpdatedAt: fmtTime(d.updated),
		Tags: d.tags, BillingCycle: d.billing, AlwaysPXE: d.alwaysPXE, IPXEScriptURL: d.ipxeURL,
		Userdata: d.userdata, Locked: d.locked,
		SOS:        s.sosHost(d.fac.Code),
		Customdata: d.customdata, Plan: d.plan.devJSON, Facility: d.fac.json, Metro: d.fac.Metro.json,
		OperatingSystem: s.cat.osJSON[d.os],
		Project:         s.projectHrefJSON(),
		ProjectLite:     s.projectHrefJSON(),
		SSHKeys:         s.sshKeysJSON(false),
		Actions:         actionsJSON,
	}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	if j.Customdata == nil {
		j.Customdata = emptyObject
	}
	if st == "queued" || st == "provisioning" {
		p := float64(now.Sub(d.phaseAt)) / float64(max(d.phaseDur, 1)) * 100
		p = float64(int(p*100)) / 100
		j.ProvisioningPercentage = &p
	}
	s.renderHardware(d, &j)
	j.IPAddresses = s.renderIPs(d, id, href)
	s.renderNetwork(d, &j)
	j.ProvisioningEvents = renderEvents(d.events, href, now)
	return j
}

// appendJSON appends the device document. The large pre-rendered parts
// (plan, facility, metro, ...) are spliced in as they are: letting
// encoding/json re-validate them for every device would triple the time a
// listing takes.
func (j *deviceJSON) appendJSON(buf []byte) ([]byte, error) {
	return j.appendDoc(buf, (*plainDevice)(j))
}

// plainDevice is deviceJSON without methods, so Marshal does not recurse.
type plainDevice deviceJSON

// appendDoc appends head (j's typed fields, as Marshal renders them) with
// j's raw fields spliced in.
func (j *deviceJSON) appendDoc(buf []byte, head any) ([]byte, error) {
	b, err := json.Marshal(head)
	if err != nil {
		return buf, err
	}
	buf = append(buf, b[:len(b)-1]...)
	for _, f := range j.rawFields() {
		if *f.raw == nil {
			continue
		}
		buf = append(buf, `,"`...)
		buf = append(buf, f.name...)
		buf = append(buf, `":`...)
		buf = append(buf, *f.raw...)
	}
	return append(buf, '}'), nil
}

// rawField is one pre-rendered attribute of a device document.
type rawField struct {
	name string
	raw  *json.RawMessage
}

// rawFields are j's pre-rendered attributes, spliced in by appendDoc.
func (j *deviceJSON) rawFields() []rawField {
	return []rawField{{"customdata", &j.Customdata}, {"plan", &j.Plan}, {"facility", &j.Facility}, {"metro", &j.Metro},
		{"operating_system", &j.OperatingSystem}, {"actions", &j.Actions},
		{"project", &j.Project}, {"project_lite", &j.ProjectLite}, {"ssh_keys", &j.SSHKeys}}
}

// MarshalJSON renders a single device document.
func (j deviceJSON) MarshalJSON() ([]byte, error) { return j.appendJSON(nil) }

// renderEvents lists the events that happened by now newest first, like
// the service (a failing provision's event is recorded ahead).
func renderEvents(evs []event, devHref string, now time.Time) []eventJSON {
	out := make([]eventJSON, 0, len(evs))
	for i := len(evs) - 1; i >= 0; i-- {
		e := evs[i]
		if e.at.After(now) {
			continue
		}
		id := e.id.String()
		out = append(out, eventJSON{
			ID: id, Type: e.typ, State: e.state, Body: e.body, Interpolated: e.body,
			CreatedAt: fmtTime(e.at), Href: "/metal/v1/events/" + id,
			Relationships: []hrefJSON{{devHref}},
		})
	}
	return out
}

// Documentation address ranges (RFC 5737, RFC 3849): public IPv4 cycles
// through 198.51.100.0/24 and 203.0.113.0/24, private IPv4 through
// 192.0.2.0/24, IPv6 is unique per device inside 2001:db8::/32.
func (s *Sim) renderIPs(d *device, id, href string) []ipJSON {
	n := d.seq
	pub4 := [4]byte{198, 51, 100, byte(2 + 2*(n%127))}
	if (n/127)%2 == 1 {
		pub4 = [4]byte{203, 0, 113, byte(2 + 2*(n%127))}
	}
	priv4 := [4]byte{192, 0, 2, byte(2 + 2*(n%127))}
	v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 15: 3})
	v6net := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 15: 2})
	created := fmtTime(d.created)
	mk := func(k byte, fam int, pub bool, addr, network, mask, gw string, cidr int) ipJSON {
		u := d.id
		u[15] ^= k
		u[14] ^= 0x5a
		ipid := u.String()
		return ipJSON{
			ID: ipid, AddressFamily: fam, Public: pub, Management: true, Manageable: true, Enabled: true,
			Address: addr, Network: network, Netmask: mask, Gateway: gw, CIDR: cidr,
			CreatedAt: created, Href: "/metal/v1/ips/" + ipid, AssignedTo: hrefJSON{href},
			ParentBlock: parentJSON{Network: network, Netmask: mask, CIDR: cidr, Href: "/metal/v1/ips/" + ipid + "/block"},
		}
	}
	a4 := func(b [4]byte, delta byte) string {
		b[3] += delta
		return netip.AddrFrom4(b).String()
	}
	return []ipJSON{
		mk(1, 4, true, a4(pub4, 1), a4(pub4, 0), "255.255.255.254", a4(pub4, 0), 31),
		mk(2, 6, true, v6.String(), v6net.String(), "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", v6net.String(), 127),
		mk(3, 4, false, a4(priv4, 1), a4(priv4, 0), "255.255.255.254", a4(priv4, 0), 31),
	}
}

// listMeta is the service's pagination block.
type listMeta struct {
	First       *hrefJSON `json:"first,omitempty"`
	Last        *hrefJSON `json:"last,omitempty"`
	Next        *hrefJSON `json:"next,omitempty"`
	Previous    *hrefJSON `json:"previous,omitempty"`
	Self        *hrefJSON `json:"self,omitempty"`
	Total       int       `json:"total"`
	CurrentPage int       `json:"current_page"`
	LastPage    int       `json:"last_page"`
}

// pageMeta builds meta for page of lastPage with hrefs in the service's
// form: path?page=N&per_page=M followed by the request's other parameters.
func pageMeta(path, extra string, page, perPage, total int) listMeta {
	lastPage := max(1, (total+perPage-1)/perPage)
	h := func(p int) *hrefJSON {
		u := path + "?page=" + strconv.Itoa(p) + "&per_page=" + strconv.Itoa(perPage)
		if extra != "" {
			u += "&" + extra
		}
		return &hrefJSON{u}
	}
	m := listMeta{First: h(1), Last: h(lastPage), Self: h(page), Total: total, CurrentPage: page, LastPage: lastPage}
	if page < lastPage {
		m.Next = h(page + 1)
	}
	if page > 1 {
		m.Previous = h(min(page-1, lastPage))
	}
	return m
}
