package imagestore

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Resolver is what planning asks of pushed images (it implements
// pipeline.Images; cmd/lkfleet wires it): Resolve, Preflight and
// MirrorWarnings over one Checker, so a planning run reads each manifest
// once, over the public URLs and without storage credentials.
type Resolver struct{ c *Checker }

// NewResolver returns a Resolver reading over client and verifying at
// depth d.
func NewResolver(client *http.Client, d Depth) *Resolver {
	return &Resolver{c: NewChecker(client, d)}
}

// Resolve is Resolve with r's checker.
func (r *Resolver) Resolve(ctx context.Context, desired []spec.Device) ([]spec.Device, error) {
	return Resolve(ctx, r.c, desired)
}

// Preflight is Preflight with r's checker.
func (r *Resolver) Preflight(ctx context.Context, desired []spec.Device) error {
	return Preflight(ctx, r.c, desired)
}

// Warnings is MirrorWarnings.
func (r *Resolver) Warnings(desired []spec.Device, metroOf map[string]string) []string {
	return MirrorWarnings(desired, metroOf)
}

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
		rel, ok := strings.CutPrefix(d.Image.BaseURL, loc.PublicURL+"/")
		if !ok || !ValidReleaseID(rel) {
			continue
		}
		out = append(out, ReleaseTargets(loc, rel, d.Image.Name)...)
	}
	return out
}

// Preflight verifies, at depth c.Depth, every object the devices will boot
// against its release manifest on the device's own location. A missing,
// partial, stale or corrupted object fails with a *VerifyError naming the
// URL and the mirror.
func Preflight(ctx context.Context, c *Checker, desired []spec.Device) error {
	return c.Verify(ctx, Targets(desired))
}

// InUse returns the releases of an image that the given boot scripts (live
// devices' userdata and script URL) boot from any of the image's
// locations, sorted. unknown counts the scripts that name none (for
// example a script served from ipxe_script_url): a caller about to delete
// releases must then refuse, because one of them may be in use.
func InUse(scripts []string, st *spec.ImageStore) (releases []string, unknown int) {
	var alts []string
	for _, l := range st.Locations() {
		alts = append(alts, regexp.QuoteMeta(l.PublicURL))
	}
	re := regexp.MustCompile(`(?:` + strings.Join(alts, "|") + `)/([0-9a-f]{16})\b`)
	set := map[string]bool{}
	for _, s := range scripts {
		ms := re.FindAllStringSubmatch(s, -1)
		if ms == nil {
			unknown++
		}
		for _, m := range ms {
			set[m[1]] = true
		}
	}
	for r := range set {
		releases = append(releases, r)
	}
	sort.Strings(releases)
	return releases, unknown
}

// MirrorWarnings warns, once per image and zone, about devices in a
// facility that boot from the default store although a mirror is keyed by
// that facility's metro: mirrors match the zone exactly as the groups
// write it, so the mirror near them goes unused. metroOf maps facility
// codes to metro codes (the API's catalogue); nil means no warnings.
func MirrorWarnings(desired []spec.Device, metroOf map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, d := range desired {
		st := d.Image.Store
		if st == nil || st.For(d.Zone).Zone != "" {
			continue
		}
		metro := metroOf[d.Zone]
		if metro == "" || metro == d.Zone || st.For(metro).Zone == "" || seen[d.Image.Key+"/"+d.Zone] {
			continue
		}
		seen[d.Image.Key+"/"+d.Zone] = true
		out = append(out, fmt.Sprintf("image %s: devices in %s boot from the %s, not from the mirror keyed by their metro %q: mirrors match the zone as the groups write it; key that mirror %q (or add one) to use it there",
			d.Image.Key, d.Zone, Describe(st.Default), metro, d.Zone))
	}
	return out
}
