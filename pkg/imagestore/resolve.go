package imagestore

import (
	"context"
	"fmt"
	"regexp"
	"sort"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Resolve points every device whose image is published with lkfleet push
// at its release on its zone's mirror (else the default store): the
// image's pinned release, or the one the default store's latest pointer
// names, read once per image. Devices of other images are returned as
// they are. desired is not modified.
func Resolve(ctx context.Context, c *Checker, desired []spec.Device) ([]spec.Device, error) {
	out := make([]spec.Device, len(desired))
	copy(out, desired)
	releases := map[string]string{} // image key -> release
	for i, d := range out {
		st := d.Image.Store
		if st == nil {
			continue
		}
		rel, ok := releases[d.Image.Key]
		if !ok {
			rel = st.Release
			if rel == spec.ReleaseLatest {
				var err error
				if rel, err = c.Latest(ctx, st.Default); err != nil {
					return nil, fmt.Errorf("image %s: resolve release latest: %w", d.Image.Key, err)
				}
			}
			releases[d.Image.Key] = rel
		}
		out[i].Image.BaseURL = st.For(d.Zone).PublicURL + "/" + rel
	}
	return out, nil
}

// Targets lists the objects that devices resolved by Resolve will boot:
// kernel, initrd and cmdline of each device's release on its location.
// Devices of images without a store are left out (pkg/ipxe's preflight
// HEADs those).
func Targets(desired []spec.Device) []Target {
	var out []Target
	for _, d := range desired {
		st := d.Image.Store
		if st == nil {
			continue
		}
		loc := st.For(d.Zone)
		rel := ReleaseOf(d.Image.BaseURL+"/"+d.Image.Name+"-kernel", d.Image.Name)
		if rel == "" {
			continue
		}
		out = append(out, ReleaseTargets(loc, rel, d.Image.Name)...)
	}
	return out
}

// Preflight resolves nothing: it verifies, at depth c.Depth, every object
// the devices will boot against its release manifest on the device's own
// location. A missing, partial, stale or corrupted object fails with a
// *VerifyError naming the URL and the mirror.
func Preflight(ctx context.Context, c *Checker, desired []spec.Device) error {
	return c.Verify(ctx, Targets(desired))
}

// ReleaseOf finds the release id in a script or URL that boots image name
// from a store (…/RELEASE/NAME-kernel), "" if there is none.
func ReleaseOf(text, name string) string {
	m := releaseRE(name).FindStringSubmatch(text)
	if m == nil {
		return ""
	}
	return m[1]
}

func releaseRE(name string) *regexp.Regexp {
	return regexp.MustCompile(`/([0-9a-f]{16})/` + regexp.QuoteMeta(name) + `-kernel\b`)
}

// InUse returns the releases of image name that the given boot scripts
// (live devices' userdata) boot, sorted. unknown counts the scripts that
// boot no release of this image that can be read (for example a script
// served from ipxe_script_url): a caller that is about to delete releases
// must then refuse, because one of them may be in use.
func InUse(scripts []string, name string) (releases []string, unknown int) {
	set := map[string]bool{}
	re := releaseRE(name)
	for _, s := range scripts {
		if m := re.FindStringSubmatch(s); m != nil {
			set[m[1]] = true
		} else {
			unknown++
		}
	}
	for r := range set {
		releases = append(releases, r)
	}
	sort.Strings(releases)
	return releases, unknown
}
