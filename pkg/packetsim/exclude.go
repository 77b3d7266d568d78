package packetsim

import (
	"encoding/json"
	"net/url"
	"strings"
	"sync"
)

// excludable are the nested objects of a device that a listing's
// `exclude` parameter replaces by their href, as the service does
// ("Excluded objects will return only the href attribute"). Clients that
// poll many devices use it to make listings several times smaller.
var excludable = map[string]bool{
	"ip_addresses": true, "provisioning_events": true, "plan": true, "facility": true,
	"metro": true, "operating_system": true, "project": true, "project_lite": true,
}

// excludeSet parses the exclude parameter (comma separated, possibly
// repeated); names the device has no such object for are ignored, as the
// service ignores them.
func excludeSet(q url.Values) map[string]bool {
	var ex map[string]bool
	for _, v := range q["exclude"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); excludable[name] {
				if ex == nil {
					ex = map[string]bool{}
				}
				ex[name] = true
			}
		}
	}
	return ex
}

// excludedDevice is a device document with some nested objects cut down to
// their hrefs. Its own fields shadow the embedded ones of the same JSON
// name.
type excludedDevice struct {
	*deviceJSONPlain
	IPAddresses        any `json:"ip_addresses"`
	ProvisioningEvents any `json:"provisioning_events"`
	Project            any `json:"project"`
	ProjectLite        any `json:"project_lite"`
}

type deviceJSONPlain deviceJSON // without methods, so Marshal does not recurse

// appendListed appends the device document as a listing with exclude ex
// shows it.
func (j *deviceJSON) appendListed(buf []byte, ex map[string]bool) ([]byte, error) {
	if len(ex) == 0 {
		return j.appendJSON(buf)
	}
	e := excludedDevice{deviceJSONPlain: (*deviceJSONPlain)(j),
		IPAddresses: j.IPAddresses, ProvisioningEvents: j.ProvisioningEvents, Project: j.Project, ProjectLite: j.ProjectLite}
	if ex["ip_addresses"] {
		hs := make([]hrefJSON, len(j.IPAddresses))
		for i, ip := range j.IPAddresses {
			hs[i] = hrefJSON{ip.Href}
		}
		e.IPAddresses = hs
	}
	if ex["provisioning_events"] {
		hs := make([]hrefJSON, len(j.ProvisioningEvents))
		for i, ev := range j.ProvisioningEvents {
			hs[i] = hrefJSON{ev.Href}
		}
		e.ProvisioningEvents = hs
	}
	if ex["project"] {
		e.Project = j.Project // already only an href
	}
	if ex["project_lite"] {
		e.ProjectLite = j.ProjectLite
	}
	b, err := json.Marshal(e)
	if err != nil {
		return buf, err
	}
	buf = append(buf, b[:len(b)-1]...)
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"customdata", j.Customdata}, {"plan", j.Plan}, {"facility", j.Facility}, {"metro", j.Metro},
		{"operating_system", j.OperatingSystem}, {"actions", j.Actions}} {
		raw := f.raw
		if ex[f.name] {
			raw = hrefOnly(raw, hrefBase[f.name])
		}
		buf = append(buf, `,"`...)
		buf = append(buf, f.name...)
		buf = append(buf, `":`...)
		buf = append(buf, raw...)
	}
	return append(buf, '}'), nil
}

// hrefCache maps a pre-rendered object (plans, facilities, metros and
// operating systems are rendered once and shared by many devices) to its
// href-only form, so excluding costs no parse per device.
var hrefCache struct {
	sync.Mutex
	m map[string]json.RawMessage
}

// hrefBase is where the service serves each kind of excluded object, for
// objects rendered without an href of their own.
var hrefBase = map[string]string{
	"plan": "/metal/v1/plans/", "facility": "/metal/v1/facilities/",
	"metro": "/metal/v1/locations/metros/", "operating_system": "/metal/v1/operating-systems/",
}

func hrefOnly(raw json.RawMessage, base string) json.RawMessage {
	if len(raw) == 0 || base == "" {
		return raw
	}
	hrefCache.Lock()
	defer hrefCache.Unlock()
	if v, ok := hrefCache.m[string(raw)]; ok {
		return v
	}
	var h struct {
		ID   string `json:"id"`
		Href string `json:"href"`
	}
	if json.Unmarshal(raw, &h) != nil || (h.Href == "" && h.ID == "") {
		return raw
	}
	if h.Href == "" {
		h.Href = base + h.ID
	}
	out, _ := json.Marshal(hrefJSON{h.Href})
	if hrefCache.m == nil || len(hrefCache.m) > 4096 {
		hrefCache.m = map[string]json.RawMessage{}
	}
	hrefCache.m[string(raw)] = out
	return out
}
