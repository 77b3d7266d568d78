package packetsim

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
)

// shaping is a request's include and exclude lists, as the service reads
// them: comma-separated (or repeated) attribute names, dotted up to three
// levels. Included objects come back whole, excluded ones as {"href": ...}.
type shaping struct {
	include map[string]bool
	exclude map[string]bool
	// hrefs caches hrefRaw's answers for one request: the objects it
	// reduces (plans, facilities, metros, operating systems) are rendered
	// once and shared by many devices.
	hrefs map[string]json.RawMessage
}

// maxShapeDepth is how deep the service follows dotted names.
const maxShapeDepth = 3

// parseShaping reads include (and exclude, where the route takes it) from q.
func parseShaping(q url.Values, withExclude bool) shaping {
	sh := shaping{include: names(q["include"])}
	if withExclude {
		sh.exclude = names(q["exclude"])
	}
	if sh.exclude != nil {
		sh.hrefs = map[string]json.RawMessage{}
	}
	return sh
}

func names(vals []string) map[string]bool {
	var m map[string]bool
	for _, v := range vals {
		for _, n := range strings.Split(v, ",") {
			n = strings.TrimSpace(n)
			if n == "" || strings.Count(n, ".") >= maxShapeDepth {
				continue
			}
			if m == nil {
				m = map[string]bool{}
			}
			m[n] = true
		}
	}
	return m
}

// included reports whether path or an attribute below it was included:
// include=project.organization needs the project whole too.
func (sh shaping) included(path string) bool {
	for n := range sh.include {
		if n == path || strings.HasPrefix(n, path+".") {
			return true
		}
	}
	return false
}

// trivial reports whether the default rendering already answers sh: no
// exclusions and nothing included under a path that is collapsed by
// default. Listings take the fast path then.
func (sh shaping) trivial(collapsed map[string]bool) bool {
	if len(sh.exclude) > 0 {
		return false
	}
	for n := range sh.include {
		parts := strings.Split(n, ".")
		for i := range parts {
			if collapsed[strings.Join(parts[:i+1], ".")] {
				return false
			}
		}
	}
	return true
}

// flat reports whether sh only excludes top-level attributes and includes
// nothing collapsed by default: a device is then shaped on its rendered
// fields (appendExcluded), without decoding its document.
func (sh shaping) flat(collapsed map[string]bool) bool {
	for n := range sh.exclude {
		if strings.Contains(n, ".") {
			return false
		}
	}
	return shaping{include: sh.include}.trivial(collapsed)
}

// appendExcluded appends j with sh's top-level exclusions applied (sh.flat
// holds): the document shapeRaw would make of it, key order aside, at the
// cost of the plain rendering. The lighter listings clients poll with
// (exclude= over thousands of devices) would otherwise decode and
// re-encode every device: seven times the cost of a full listing.
func (j *deviceJSON) appendExcluded(buf []byte, sh shaping) ([]byte, error) {
	for _, f := range j.rawFields() {
		if sh.exclude[f.name] && *f.raw != nil {
			*f.raw = sh.hrefRaw(*f.raw)
		}
	}
	head := struct {
		*plainDevice
		// Shadow the embedded fields of the same JSON names.
		IPAddresses        any `json:"ip_addresses"`
		ProvisioningEvents any `json:"provisioning_events"`
		NetworkPorts       any `json:"network_ports"`
	}{(*plainDevice)(j), j.IPAddresses, j.ProvisioningEvents, j.NetworkPorts}
	if sh.exclude["ip_addresses"] {
		head.IPAddresses = hrefsOf(j.IPAddresses, func(ip *ipJSON) string { return ip.Href })
	}
	if sh.exclude["provisioning_events"] {
		head.ProvisioningEvents = hrefsOf(j.ProvisioningEvents, func(e *eventJSON) string { return e.Href })
	}
	if sh.exclude["network_ports"] {
		head.NetworkPorts = hrefsOf(j.NetworkPorts, func(p *portJSON) string { return p.Href })
	}
	return j.appendDoc(buf, head)
}

// hrefsOf is an excluded array of objects with hrefs: their hrefs. An
// empty (or null) array stays as it is: it has no object to reduce.
func hrefsOf[T any](xs []T, href func(*T) string) any {
	if len(xs) == 0 {
		return xs
	}
	hs := make([]hrefJSON, len(xs))
	for i := range xs {
		hs[i] = hrefJSON{href(&xs[i])}
	}
	return hs
}

// hrefRaw is an excluded attribute's rendering: by shape's rule, its
// href (or hrefs) when it is an object with an href or an array of them,
// else raw unchanged.
func (sh shaping) hrefRaw(raw json.RawMessage) json.RawMessage {
	if out, ok := sh.hrefs[string(raw)]; ok {
		return out
	}
	out := raw
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) == nil && hasHref(v) {
		if b, err := json.Marshal(hrefOnly(v)); err == nil {
			out = b
		}
	}
	if sh.hrefs != nil && len(sh.hrefs) < 1024 {
		sh.hrefs[string(raw)] = out
	}
	return out
}

// shapeRaw applies sh to one rendered document whose collapsed paths
// are rendered whole.
func (sh shaping) shapeRaw(doc []byte, collapsed map[string]bool) []byte {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return doc
	}
	b, err := json.Marshal(sh.shape(v, "", collapsed))
	if err != nil {
		return doc
	}
	return b
}

// shape walks a decoded document; arrays keep their parent's path, so
// exclude=ip_addresses reduces every address to its href.
func (sh shaping) shape(v any, path string, collapsed map[string]bool) any {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if hasHref(c) && (sh.exclude[p] || (collapsed[p] && !sh.included(p))) {
				t[k] = hrefOnly(c)
				continue
			}
			t[k] = sh.shape(c, p, collapsed)
		}
	case []any:
		for i := range t {
			t[i] = sh.shape(t[i], path, collapsed)
		}
	}
	return v
}

// hasHref reports whether v is an object with an href, or a non-empty
// array of them: only those can be reduced to a reference.
func hasHref(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		_, ok := t["href"]
		return ok
	case []any:
		for _, e := range t {
			if !hasHref(e) {
				return false
			}
		}
		return len(t) > 0
	}
	return false
}

func hrefOnly(v any) any {
	switch t := v.(type) {
	case map[string]any:
		return map[string]any{"href": t["href"]}
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = hrefOnly(e)
		}
		return out
	}
	return v
}

// shapeJSON marshals v and applies sh to it.
func (sh shaping) shapeJSON(v any, collapsed map[string]bool) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"errors":["internal error"]}`)
	}
	if len(sh.include) == 0 && len(sh.exclude) == 0 && len(collapsed) == 0 {
		return b
	}
	return sh.shapeRaw(b, collapsed)
}
