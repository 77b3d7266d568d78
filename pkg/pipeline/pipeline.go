// Package pipeline is planning end to end: the desired devices of a fleet
// (expansion, catalogue check, release resolution, rendering, artifact
// preflight) against the live ones (listing), diffed into a planner.Plan,
// plus the checks a saved plan passes before it is applied. It reaches the
// API only through Backend and the image store only through Images, which
// it declares itself, so any backend (pkg/packet for the real service,
// pkg/imagestore for pushed images, in-memory fakes in tests) plugs in;
// the commands in cmd/lkfleet only wire flags to it.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/lkfleet/lkfleet/pkg/ipxe"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Lister lists live devices: the fleet's (one tag-filtered listing) and,
// for hostname clashes with devices the fleet does not own, the project's.
type Lister interface {
	List(ctx context.Context) ([]planner.Live, error)
	ListAll(ctx context.Context) ([]planner.Live, error)
}

// Backend is everything planning asks of the API: the listings, the
// catalogue of machine types and locations, whether the zones have the
// capacity for the devices a plan creates, and the project's VLANs.
type Backend interface {
	Lister
	Catalogue(ctx context.Context) (planner.Catalogue, error)
	// CheckCapacity returns one warning per zone and machine type whose
	// needs the service says it cannot meet.
	CheckCapacity(ctx context.Context, needs map[planner.Need]int) ([]string, error)
	// VirtualNetworks lists the project's VLANs, asked only when a group
	// has a network type (see withVirtualNetworks).
	VirtualNetworks(ctx context.Context) ([]planner.VirtualNetwork, error)
}

// Request is one planning run.
type Request struct {
	Fleet *spec.Fleet
	// FleetBytes are the fleet file's bytes: their hash is the plan's
	// fleet fingerprint.
	FleetBytes []byte
	// Rebuild and Replace are apply's --rebuild and --replace targets.
	Rebuild, Replace []string
	// SkipPreflight leaves the artifact and script URL checks out.
	SkipPreflight bool
	// HTTP fetches cmdlines and checks artifacts; nil uses HTTPClient().
	HTTP *http.Client
	// Images resolves and verifies the images published with lkfleet
	// push; nil when the fleet has none.
	Images Images
	// Note receives what a person should know on the way (what
	// --skip-preflight left unchecked); nil drops it.
	Note func(string)
	// Runs are the finished runs of the fleet's lease record
	// (planner.Input.Runs); the zero value settles no pending marker.
	Runs planner.Runs
	// BeforeLive, when set, runs once the fleet has passed every check
	// that needs no live state (catalogue, images, preflight), right
	// before the first listing; its error ends the plan. apply takes the
	// fleet's lease there: bad input never writes, and the lease's settle
	// delay passes while the plan lists.
	BeforeLive func(context.Context) error
}

// HTTPClient is the client artifacts are fetched and checked with by
// default: every request bounded by ipxe.RequestTimeout.
func HTTPClient() *http.Client { return &http.Client{Timeout: ipxe.RequestTimeout} }

// Plan runs the whole pipeline: catalogue, expand, catalogue check,
// release resolution, render, preflight (store images verified against
// their manifests), one tag-filtered listing (plus one project listing
// when devices are to be created, for hostname clashes), the project's
// VLANs when a group has a network type, diff, and a capacity check of
// what the plan creates.
func Plan(ctx context.Context, b Backend, r Request) (planner.Plan, error) {
	if r.Fleet == nil {
		return planner.Plan{}, errors.New("plan: no fleet given")
	}
	hc := r.HTTP
	if hc == nil {
		hc = HTTPClient()
	}
	cat, err := b.Catalogue(ctx)
	if err != nil {
		return planner.Plan{}, err
	}
	desired, err := Desired(ctx, hc, r.Images, r.Fleet, &cat)
	if err != nil {
		return planner.Plan{}, err
	}
	if r.SkipPreflight {
		if r.Note != nil {
			r.Note(skippedPreflight(desired))
		}
	} else if err := Preflight(ctx, hc, r.Images, desired); err != nil {
		return planner.Plan{}, err
	}
	if r.BeforeLive != nil {
		if err := r.BeforeLive(ctx); err != nil {
			return planner.Plan{}, err
		}
	}
	in, err := listed(ctx, b, r, desired, &cat)
	if err != nil {
		return planner.Plan{}, err
	}
	if err := withVirtualNetworks(ctx, b, desired, &cat); err != nil {
		return planner.Plan{}, err
	}
	plan, err := planner.Compute(in)
	if err != nil {
		return planner.Plan{}, err
	}
	if err := Hardware(ctx, b, &plan, in); err != nil { // hardware.go
		return planner.Plan{}, err
	}
	plan.Warnings = append(plan.Warnings, imageWarnings(r.Images, desired, cat.Facilities)...)
	if needs := CapacityNeeds(plan); len(needs) > 0 {
		warnings, err := b.CheckCapacity(ctx, needs)
		if err != nil {
			return planner.Plan{}, err
		}
		plan.Warnings = append(plan.Warnings, warnings...)
	}
	return plan, nil
}

// Desired expands the fleet into its desired devices, checks them against
// the catalogue (when one is given) and renders their scripts and revs
// (store images resolved through im).
func Desired(ctx context.Context, hc *http.Client, im Images, f *spec.Fleet, cat *planner.Catalogue) ([]spec.Device, error) {
	desired, err := spec.Expand(f)
	if err != nil {
		return nil, err
	}
	var arches map[string]string
	if cat != nil {
		if err := planner.CheckCatalogue(desired, *cat); err != nil {
			return nil, err
		}
		arches = Arches(*cat)
	}
	return Render(ctx, hc, im, desired, arches)
}

// Render renders the iPXE script and rev of every desired device,
// fetching each image's cmdline once. Images published with lkfleet push
// are first resolved through im (nil when the devices have none) to the
// release and location each device boots, so the rev and the script name
// the release. arches maps machine slugs to architectures (nil when
// unknown).
func Render(ctx context.Context, hc *http.Client, im Images, desired []spec.Device, arches map[string]string) ([]spec.Device, error) {
	desired, err := resolveImages(ctx, im, desired)
	if err != nil {
		return nil, err
	}
	cmdlines, err := ipxe.FetchCmdlines(ctx, hc, desired)
	if err != nil {
		return nil, err
	}
	return ipxe.Render(desired, cmdlines, arches)
}

// Preflight checks that every kernel, initrd and script URL answers, and
// through im (nil when the devices have no store images) that every
// object of a pushed release matches its manifest.
func Preflight(ctx context.Context, hc *http.Client, im Images, desired []spec.Device) error {
	if err := ipxe.Preflight(ctx, hc, desired); err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	if err := ipxe.CheckScriptURLs(ctx, hc, desired); err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	if im != nil {
		if err := im.Preflight(ctx, desired); err != nil {
			return fmt.Errorf("preflight: %w", err)
		}
	}
	return nil
}

// listed builds the planner's input from the listings.
func listed(ctx context.Context, b Lister, r Request, desired []spec.Device, cat *planner.Catalogue) (planner.Input, error) {
	live, err := b.List(ctx)
	if err != nil {
		return planner.Input{}, err
	}
	in := planner.Input{
		Fleet:            r.Fleet,
		Desired:          desired,
		Live:             live,
		Rebuild:          r.Rebuild,
		Replace:          r.Replace,
		FleetFingerprint: planner.FleetFingerprint(r.FleetBytes),
		Catalogue:        cat,
		Runs:             r.Runs,
	}
	if !createsAny(desired, live) {
		return in, nil
	}
	// Devices will be created: look at the whole project once for
	// hostname clashes with devices this fleet does not own.
	all, err := b.ListAll(ctx)
	if err != nil {
		return planner.Input{}, err
	}
	for _, d := range all {
		if d.Fleet() != r.Fleet.Name {
			in.Foreign = append(in.Foreign, d)
		}
	}
	return in, nil
}

// withVirtualNetworks lists the project's VLANs into the catalogue when a
// desired device has a network type (one request), so the plan can tell
// VLANs by number or description; fleets without network types pay
// nothing.
func withVirtualNetworks(ctx context.Context, b Backend, desired []spec.Device, cat *planner.Catalogue) error {
	if !slices.ContainsFunc(desired, func(d spec.Device) bool { return d.NetworkType != "" }) {
		return nil
	}
	vs, err := b.VirtualNetworks(ctx)
	if err != nil {
		return err
	}
	cat.VirtualNetworks = vs
	return nil
}

// Saved is a plan read from a file, and the file's name for messages.
type Saved struct {
	Plan planner.Plan
	Path string
}

// CheckSaved refuses a saved plan whose fleet file or live devices changed
// since it was saved, or that would act outside the fleet (CheckTargets).
// beforeLive is Request.BeforeLive.
func CheckSaved(ctx context.Context, b Lister, s Saved, f *spec.Fleet, fleetBytes []byte, beforeLive func(context.Context) error) error {
	plan, path := s.Plan, s.Path
	if plan.Fleet != f.Name {
		return fmt.Errorf("plan %s is for fleet %q, not %q", path, plan.Fleet, f.Name)
	}
	if plan.FleetFingerprint != planner.FleetFingerprint(fleetBytes) {
		return fmt.Errorf("plan %s is stale: %s changed since it was saved; run 'lkfleet plan' again", path, f.File)
	}
	if beforeLive != nil {
		if err := beforeLive(ctx); err != nil {
			return err
		}
	}
	live, err := b.List(ctx)
	if err != nil {
		return err
	}
	if planner.LiveFingerprint(live) != plan.LiveFingerprint {
		return fmt.Errorf("plan %s is stale: the fleet's devices changed since it was saved; run 'lkfleet plan' again", path)
	}
	return CheckTargets(plan, f, live)
}

// CheckTargets refuses a plan that would act outside fleet f: every device
// a change touches must be in the fleet's own tag-filtered listing (live),
// in the change's slot, and every desired device must belong to the fleet
// and project. A saved plan's checksum detects accidents, not edits:
// someone who recomputes it could otherwise point a delete at a device of
// another owner, and the plan's live fingerprint would still match.
func CheckTargets(p planner.Plan, f *spec.Fleet, live []planner.Live) error {
	if p.Project != "" && p.Project != f.Project {
		return fmt.Errorf("the plan is for project %s, not %s: refusing it", p.Project, f.Project)
	}
	listed := make(map[string]planner.Live, len(live))
	for _, l := range live {
		listed[l.ID] = l
	}
	for _, c := range p.Changes {
		if id := c.DeviceID(); id != "" {
			l, ok := listed[id]
			if !ok {
				return fmt.Errorf("the plan would %s device %s (slot %s), which is not one of fleet %q's devices: refusing it", c.Action, id, c.Slot(), f.Name)
			}
			if l.Slot() != c.Slot() {
				return fmt.Errorf("the plan would %s device %s as slot %s, but that device is slot %s: refusing it", c.Action, id, c.Slot(), l.Slot())
			}
		} else if c.Action != planner.Create {
			return fmt.Errorf("the plan would %s slot %s without naming its device: refusing it", c.Action, c.Slot())
		}
		if d := c.Desired; d != nil && d.Fleet != f.Name {
			return fmt.Errorf("the plan's slot %s holds a device for fleet %q: refusing it", c.Slot(), d.Fleet)
		}
	}
	return nil
}

// Arches maps machine slugs to the architecture the catalogue gives.
func Arches(cat planner.Catalogue) map[string]string {
	m := make(map[string]string, len(cat.Plans))
	for slug, p := range cat.Plans {
		if p.Arch != "" {
			m[slug] = p.Arch
		}
	}
	return m
}

// createsAny reports whether any desired slot has no live device.
func createsAny(desired []spec.Device, live []planner.Live) bool {
	have := make(map[string]bool, len(live))
	for _, l := range live {
		have[l.Slot()] = true
	}
	for _, d := range desired {
		if !have[d.Slot] {
			return true
		}
	}
	return false
}

// CapacityNeeds counts the devices a plan creates per zone and machine:
// creates, replacements and rebuilds that make a new device.
func CapacityNeeds(p planner.Plan) map[planner.Need]int {
	needs := map[planner.Need]int{}
	for _, c := range p.Changes {
		if c.Desired == nil {
			continue
		}
		switch c.Action {
		case planner.Create, planner.Replace:
		case planner.Rebuild:
			if c.Strategy.InPlace() {
				continue
			}
		default:
			continue
		}
		if c.Desired.Hardware.Reservation.Reserved() {
			continue // a reserved server is not taken from the shared pool
		}
		needs[planner.Need{Zone: c.Desired.Zone, Machine: c.Desired.Machine}]++
	}
	return needs
}

// skippedPreflight says what --skip-preflight left unchecked.
func skippedPreflight(desired []spec.Device) string {
	artifacts, scripts, cmdlines := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, d := range desired {
		if d.Image.Cmdline == "" {
			cmdlines[d.Image.Key] = true // fetched from base_url all the same
		}
		artifacts[d.Image.KernelURL()] = true
		artifacts[d.Image.InitrdURL()] = true
		if d.IPXEScriptURL != "" {
			scripts[d.IPXEScriptURL] = true
		}
	}
	msg := fmt.Sprintf("Preflight skipped (--skip-preflight): %d kernel and initrd URLs and %d script URLs were not checked.", len(artifacts), len(scripts))
	switch n := len(cmdlines); {
	case n == 1:
		msg += " The cmdline of 1 image was still fetched: each device's script carries its image's cmdline."
	case n > 1:
		msg += fmt.Sprintf(" The cmdlines of %d images were still fetched: each device's script carries its image's cmdline.", n)
	}
	return msg
}
