package spec

import (
	"net/url"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// ReleaseLatest pins an image to the newest release pushed to its store.
const ReleaseLatest = "latest"

// StoreLocation is one S3-compatible bucket and prefix that lkfleet push
// publishes an image's releases to, and the public URL devices read it at.
type StoreLocation struct {
	// Zone is "" for the image's default store, else the zone code (metro
	// or facility) whose devices boot from this mirror.
	Zone string
	// Endpoint is the S3 API URL; "" means AWS for Region.
	Endpoint  string
	Region    string
	Bucket    string
	Prefix    string // no leading or trailing slash; may be ""
	PathStyle bool
	// PublicURL is where PREFIX's objects are readable over HTTP(S) without
	// credentials (no trailing slash): devices boot from it and plans check
	// it. Derived from the other keys when the file omits it.
	PublicURL string
}

// ImageStore is an image published by lkfleet push: its default store,
// its per-zone mirrors and the release devices boot.
type ImageStore struct {
	Default StoreLocation
	// Mirrors in zone order; each zone at most once.
	Mirrors []StoreLocation
	// Release is ReleaseLatest or a release id (16 hex digits).
	Release string
}

// For returns the location devices in zone boot from: the zone's mirror,
// else the default store.
func (s *ImageStore) For(zone string) StoreLocation {
	for _, m := range s.Mirrors {
		if m.Zone == zone {
			return m
		}
	}
	return s.Default
}

// Locations returns the default store followed by every mirror: where push
// uploads. Zones that share one bucket and prefix (two facilities served by
// one mirror) appear once, under the first zone, so it is uploaded once.
func (s *ImageStore) Locations() []StoreLocation {
	out := []StoreLocation{s.Default}
	type where struct{ endpoint, region, bucket, prefix string }
	seen := map[where]bool{{s.Default.Endpoint, s.Default.Region, s.Default.Bucket, s.Default.Prefix}: true}
	for _, m := range s.Mirrors {
		w := where{m.Endpoint, m.Region, m.Bucket, m.Prefix}
		if !seen[w] {
			seen[w] = true
			out = append(out, m)
		}
	}
	return out
}

var (
	storeKeys   = []string{"endpoint", "region", "bucket", "prefix", "path_style", "public_url"}
	reBucket    = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	rePrefix    = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$`)
	reRegion    = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)
	reReleaseID = regexp.MustCompile(`^[0-9a-f]{16}$`)
)

// DefaultStoreRegion is store.region when the file omits it.
const DefaultStoreRegion = "us-east-1"

// imageStore decodes an image's store, mirrors and release keys. It
// returns nil when the image has no store (it is then served from
// base_url), and reports base_url given together with a store.
func (l *loader) imageStore(fs fields, base sval) *ImageStore {
	se, hasStore := fs.m["store"]
	if !hasStore {
		for _, k := range []string{"mirrors", "release"} {
			if e, ok := fs.m[k]; ok {
				l.add(e.k, joinPath(fs.path, k), "needs a store: %s only applies to images published with lkfleet push", k)
			}
		}
		return nil
	}
	if base.set {
		l.add(base.n, base.path, "give either base_url or store, not both: with a store, devices boot from store.public_url/RELEASE")
	}
	st := &ImageStore{Release: ReleaseLatest}
	def, ok := l.storeLocation(se.v, joinPath(fs.path, "store"), nil)
	if ok {
		st.Default = def
	}
	if me, ok := fs.m["mirrors"]; ok && !isNull(resolve(me.v)) {
		mpath := joinPath(fs.path, "mirrors")
		if r := resolve(me.v); r.Kind != yaml.MappingNode {
			l.add(me.v, mpath, "must be a mapping from zone code to store keys, not %s", describe(r))
		} else {
			for _, e := range l.entries(me.v, mpath) {
				p := joinPath(mpath, e.key)
				if !reZone.MatchString(e.key) {
					l.add(e.k, p, "%q is not a zone code (a metro such as ny or a facility such as ewr1)", e.key)
					continue
				}
				m, ok := l.storeLocation(e.v, p, &def)
				if !ok {
					continue
				}
				m.Zone = e.key
				if m.PublicURL == def.PublicURL {
					l.add(e.k, p, "mirror %q is the default store itself (same public_url %s); give it its own bucket, prefix or endpoint", e.key, m.PublicURL)
					continue
				}
				st.Mirrors = append(st.Mirrors, m)
			}
		}
		slices.SortFunc(st.Mirrors, func(a, b StoreLocation) int { return strings.Compare(a.Zone, b.Zone) })
	}
	if rel := l.str(fs, "release", true); rel.ok() {
		if rel.v != ReleaseLatest && !reReleaseID.MatchString(rel.v) {
			l.add(rel.n, rel.path, "%q is not a release: use latest or a release id of 16 hex digits (lkfleet push prints it)", rel.v)
		} else {
			st.Release = rel.v
		}
	}
	return st
}

// storeLocation decodes one store mapping. A mirror (parent non-nil)
// inherits every key it omits from the default store.
func (l *loader) storeLocation(n *yaml.Node, path string, parent *StoreLocation) (StoreLocation, bool) {
	if r := resolve(n); r.Kind != yaml.MappingNode {
		l.add(n, path, "a store must be a mapping with at least bucket, not %s", describe(r))
		return StoreLocation{}, false
	}
	before := len(l.errs)
	fs := l.fieldsOf(n, path, storeKeys)
	var loc StoreLocation
	if parent != nil {
		loc = *parent
		loc.PublicURL = "" // derived again unless given
	}
	if e := l.str(fs, "endpoint", true); e.ok() {
		if u, err := url.Parse(e.v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			l.add(e.n, e.path, "%q is not an S3 endpoint: want an http or https URL with no path, such as https://s3.example.com", e.v)
		} else {
			loc.Endpoint = strings.TrimRight(e.v, "/")
		}
	}
	if r := l.match(l.str(fs, "region", true), reRegion, "region (lower-case letters, digits and '-')"); r.ok() {
		loc.Region = r.v
	}
	if loc.Region == "" {
		loc.Region = DefaultStoreRegion
	}
	b := l.match(l.str(fs, "bucket", true), reBucket, "bucket name (3-63 lower-case letters, digits, '.' and '-')")
	switch {
	case b.ok():
		loc.Bucket = b.v
	case !b.set && loc.Bucket == "":
		l.add(fs.node, b.path, "missing; the bucket lkfleet push uploads releases to")
	}
	if p := l.str(fs, "prefix", true); p.ok() {
		v := strings.Trim(p.v, "/")
		if v != "" && !rePrefix.MatchString(v) {
			l.add(p.n, p.path, "%q is not a valid prefix (letters, digits, '.', '_', '-' separated by '/')", p.v)
		} else {
			loc.Prefix = v
		}
	}
	if ps := l.bool(fs, "path_style"); ps.set && !ps.bad {
		loc.PathStyle = ps.v
	}
	if pu := l.str(fs, "public_url", true); pu.ok() {
		v := strings.TrimRight(pu.v, "/")
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			l.add(pu.n, pu.path, "%q is not an absolute http or https URL without query or fragment", pu.v)
		} else {
			loc.PublicURL = v
		}
	}
	if len(l.errs) > before {
		return loc, false
	}
	if loc.PublicURL == "" {
		loc.PublicURL = derivePublicURL(loc)
	}
	return loc, true
}

// derivePublicURL is where an S3 store serves PREFIX anonymously:
// ENDPOINT/BUCKET/PREFIX path-style, else the bucket as a host name.
func derivePublicURL(loc StoreLocation) string {
	var base string
	switch {
	case loc.Endpoint == "":
		base = "https://" + loc.Bucket + ".s3." + loc.Region + ".amazonaws.com"
	case loc.PathStyle:
		base = loc.Endpoint + "/" + loc.Bucket
	default:
		u, _ := url.Parse(loc.Endpoint)
		base = u.Scheme + "://" + loc.Bucket + "." + u.Host
	}
	if loc.Prefix != "" {
		base += "/" + loc.Prefix
	}
	return base
}

// BaseURL is the image's base URL on the default store when the release
// is pinned, "" while it is latest: the release is then resolved from the
// store's latest pointer before rendering (pkg/imagestore.Resolve).
func (s *ImageStore) BaseURL() string {
	if s.Release == ReleaseLatest {
		return ""
	}
	return s.Default.PublicURL + "/" + s.Release
}
