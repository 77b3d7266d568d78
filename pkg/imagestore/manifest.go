package imagestore

import (
	"encoding/json"
	"fmt"
	"path"
	"time"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// ManifestName is the object, inside a release, that makes it exist.
const ManifestName = "manifest.json"

// LatestName is the object, directly under the prefix, that names the
// newest pushed release.
const LatestName = "latest"

// Manifest describes one complete release on one location. It is written
// after every object it lists, so its presence promises their presence.
type Manifest struct {
	Release string         `json:"release"`
	Name    string         `json:"name"`
	Source  string         `json:"source"`
	Pushed  time.Time      `json:"pushed"`
	Files   []ManifestFile `json:"files"`
}

// ManifestFile is one object of a release. ETag is the store's ETag of the
// object as uploaded to this location (it differs between stores, and
// between single-part and multipart uploads); size and digest do not.
type ManifestFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	ETag   string `json:"etag,omitempty"`
}

// Latest is the content of the latest pointer.
type Latest struct {
	Release string    `json:"release"`
	Pushed  time.Time `json:"pushed"`
}

// File returns the manifest's entry for name.
func (m *Manifest) File(name string) (ManifestFile, bool) {
	for _, f := range m.Files {
		if f.Name == name {
			return f, true
		}
	}
	return ManifestFile{}, false
}

func decodeManifest(data []byte, where string) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", where, err)
	}
	if !ValidReleaseID(m.Release) || len(m.Files) == 0 {
		return nil, fmt.Errorf("manifest %s: not an lkfleet release manifest", where)
	}
	return &m, nil
}

func decodeLatest(data []byte, where string) (*Latest, error) {
	var l Latest
	if err := json.Unmarshal(data, &l); err != nil || !ValidReleaseID(l.Release) {
		return nil, fmt.Errorf("latest pointer %s: not an lkfleet latest pointer", where)
	}
	return &l, nil
}

// key is the object key of name inside release on loc ("" release: under
// the prefix itself).
func key(loc spec.StoreLocation, release, name string) string {
	return path.Join(loc.Prefix, release, name)
}

// releasePrefix is the key prefix (with trailing slash) of a release, or of
// the whole store when release is "".
func releasePrefix(loc spec.StoreLocation, release string) string {
	p := path.Join(loc.Prefix, release)
	if p == "" || p == "." {
		return ""
	}
	return p + "/"
}

// URL is the public URL of name inside release on loc.
func URL(loc spec.StoreLocation, release, name string) string {
	if release == "" {
		return loc.PublicURL + "/" + name
	}
	return loc.PublicURL + "/" + release + "/" + name
}

// Describe names a location in messages: its zone (or "default") and its
// bucket and prefix.
func Describe(loc spec.StoreLocation) string {
	zone := "default store"
	if loc.Zone != "" {
		zone = "mirror " + loc.Zone
	}
	return fmt.Sprintf("%s (s3://%s/%s)", zone, loc.Bucket, loc.Prefix)
}
