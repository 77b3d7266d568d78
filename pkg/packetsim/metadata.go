package packetsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// metadataPrefix is where the main listener serves each device's metadata
// service: /metadata/{device-id}/metadata, .../userdata, .../events and
// .../phone-home. On the service the metadata host tells devices apart by
// their source address; on one machine the path (or a listener per
// device, see MetadataHandler) does.
const metadataPrefix = "/metadata/"

// User state codes the simulator's own boots post (the service leaves
// 1000..1099 to the device; these are lkfleet's convention).
const (
	UserCodeBooting    = 1000 // state running: the boot started
	UserCodeBooted     = 1001 // state succeeded: the kernel booted
	UserCodeBootFailed = 1002 // state failed: the message says why
)

// userState is what a device posts to its user_state_url.
type userState struct {
	State   string `json:"state"`
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (u userState) validate() error {
	switch u.State {
	case UserStateRunning, UserStateSucceeded, UserStateFailed:
	default:
		return fmt.Errorf("state %q must be running, succeeded or failed", u.State)
	}
	if u.Code < 1000 || u.Code > 1099 {
		return fmt.Errorf("code %d must be between 1000 and 1099", u.Code)
	}
	return nil
}

// userStateEventType is the type of the event a user state becomes.
func userStateEventType(code int) string { return "user." + strconv.Itoa(code) }

// recordUserState adds u to d's events as the service does: type
// user.<code>, the state, and the message as body. The caller holds s.mu
// (write).
func (s *Sim) recordUserState(d *device, u userState, at time.Time) {
	ev := event{id: s.newID(), at: at, typ: userStateEventType(u.Code), state: u.State, body: u.Message}
	d.events = append(d.events[:len(d.events):len(d.events)], ev)
	s.markDirty()
}

// MetadataHandler serves the metadata service for one device: GET
// /metadata, GET /userdata, POST /events (user state) and POST
// /phone-home, relative to wherever it is mounted. Every URL it announces
// is built from the request's Host and the prefix it was mounted under
// (what http.StripPrefix removed), so the same handler answers as
// http://169.254.169.254/ on a listener of its own and as
// http://HOST/metadata/{id}/ on the main listener.
func (s *Sim) MetadataHandler(deviceID string) http.Handler {
	id := strings.ToLower(deviceID)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serveMetadata(w, r, id) })
}

// serveMetadataPath dispatches /metadata/{id}/... on the main listener.
func (s *Sim) serveMetadataPath(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, metadataPrefix)
	id, _, _ := strings.Cut(rest, "/")
	http.StripPrefix(metadataPrefix+id, s.MetadataHandler(id)).ServeHTTP(w, r)
}

// mountBase is the URL the handler is mounted at, from the request.
func mountBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	prefix := ""
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil && strings.HasSuffix(u.Path, r.URL.Path) {
		prefix = strings.TrimSuffix(u.Path, r.URL.Path)
	}
	return scheme + "://" + r.Host + prefix
}

// metaErr answers in the metadata host's error form, which packngo's
// metadata package reads.
func metaErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *Sim) serveMetadata(w http.ResponseWriter, r *http.Request, id string) {
	route := map[string]string{"/metadata": "GET", "/userdata": "GET", "/events": "POST", "/phone-home": "POST"}
	method, known := route[r.URL.Path]
	switch {
	case !known:
		metaErr(w, http.StatusNotFound, "Not found")
		return
	case r.Method != method:
		metaErr(w, http.StatusMethodNotAllowed, "Method not allowed")
		return
	}
	now := s.now()
	var u userState
	if method == "POST" && r.URL.Path == "/events" {
		if !decodeBody(w, r, &u, true) {
			return
		}
		if err := u.validate(); err != nil {
			metaErr(w, http.StatusUnprocessableEntity, err.Error())
			return
		}
	}
	s.mu.Lock()
	d := s.liveDevice(id, now)
	if d == nil {
		s.mu.Unlock()
		metaErr(w, http.StatusNotFound, "no such device: "+id)
		return
	}
	var body []byte
	switch r.URL.Path {
	case "/metadata":
		body = mustJSON(s.metadataDoc(d, mountBase(r), false, now))
	case "/userdata":
		body = []byte(d.userdata)
	case "/events":
		s.recordUserState(d, u, now)
	case "/phone-home":
		d.events = append(d.events[:len(d.events):len(d.events)], event{id: s.newID(), at: now, typ: "provisioning.phone_home", body: "The device phoned home"})
		s.markDirty()
	}
	s.mu.Unlock()
	switch r.URL.Path {
	case "/metadata":
		writeRaw(w, http.StatusOK, body)
	case "/userdata":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	default:
		if err := s.waitSaved(); err != nil {
			metaErr(w, http.StatusInternalServerError, "could not save the simulator state: "+err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// liveDevice finds a device that still answers; the caller holds s.mu.
func (s *Sim) liveDevice(id string, now time.Time) *device {
	u, ok := parseUUID(id)
	if !ok {
		return nil
	}
	if d := s.devs[u]; d != nil && !d.goneAt(now, s.cfg.DeprovisionTime) {
		return d
	}
	return nil
}

// metadataDoc is what the metadata service tells a device about itself.
// base is where the device reaches the service. The metadata host lists
// addresses as objects (what images read); the API's description of GET
// /devices/{id}/metadata has them as strings and the bonding under
// network.network, so apiForm renders that. The caller holds s.mu.
func (s *Sim) metadataDoc(d *device, base string, apiForm bool, now time.Time) map[string]any {
	id := d.id.String()
	mode, aggregation, nics := s.metadataNetwork(d)
	var os struct {
		Slug    string `json:"slug"`
		Distro  string `json:"distro"`
		Version string `json:"version"`
	}
	json.Unmarshal(s.cat.osJSON[d.os], &os)
	keys := make([]string, 0, len(s.keys))
	for _, k := range s.keys {
		keys = append(keys, k.key)
	}
	ips := s.renderIPs(d, id, deviceHref(id))
	bonding := map[string]any{"mode": mode, "link_aggregation": aggregation, "mac": nics[0].MAC}
	network := map[string]any{"bonding": bonding, "interfaces": nics, "addresses": ips}
	if apiForm {
		addrs := make([]string, 0, len(ips))
		for _, ip := range ips {
			addrs = append(addrs, ip.Address+"/"+strconv.Itoa(ip.CIDR))
		}
		network["addresses"] = addrs
		network["network"] = map[string]any{"bonding": bonding}
	}
	tags := d.tags
	if tags == nil {
		tags = []string{}
	}
	custom := d.customdata
	if custom == nil {
		custom = emptyObject
	}
	return map[string]any{
		"id": id, "hostname": d.hostname, "iqn": "iqn.2026-01.net.packet:device." + id[:8],
		"operating_system": map[string]any{"slug": os.Slug, "distro": os.Distro, "version": os.Version, "image_tag": nil},
		"plan":             d.plan.Slug, "class": d.plan.Class, "facility": d.fac.Code, "metro": d.fac.Metro.Code,
		"tags": tags, "ssh_keys": keys, "network": network, "customdata": custom,
		"specs":           map[string]any{"cpus": []map[string]any{{"count": d.plan.CPUs, "type": d.plan.CPU}}, "memory": map[string]any{"total": d.plan.Memory}},
		"private_subnets": []string{"10.0.0.0/8"}, "reserved": false, "volumes": []string{},
		"switch_short_id": id[:8], "state": d.state(now, s.cfg.DeprovisionTime),
		"api_url":        base,
		"phone_home_url": base + "/phone-home",
		"user_state_url": base + "/events",
	}
}

// deviceMetadata answers GET /devices/{id}/metadata: the metadata of the
// device as the API describes it, its URLs pointing at the main listener.
func (s *Sim) deviceMetadata(w http.ResponseWriter, r *http.Request, id string) {
	now := s.now()
	s.mu.RLock()
	d := s.lookup(w, id, now)
	var doc map[string]any
	if d != nil {
		base := "http://" + r.Host + metadataPrefix + d.id.String()
		doc = s.metadataDoc(d, base, true, now)
	}
	s.mu.RUnlock()
	if d != nil {
		writeJSON(w, http.StatusOK, doc)
	}
}

// deviceUserdata answers GET /devices/{id}/userdata.
func (s *Sim) deviceUserdata(w http.ResponseWriter, r *http.Request, id string) {
	now := s.now()
	s.mu.RLock()
	d := s.lookup(w, id, now)
	var ud string
	if d != nil {
		ud = d.userdata
	}
	s.mu.RUnlock()
	if d != nil {
		writeJSON(w, http.StatusOK, map[string]string{"userdata": ud})
	}
}
