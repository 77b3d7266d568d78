package planner

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/lkfleet/lkfleet/pkg/network"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// PlanFileVersion is the format version of saved plan files. Load refuses
// any other: a plan is applied exactly, so guessing at a format is unsafe.
const PlanFileVersion = "1"

// planFileKind marks a JSON document as a saved lkfleet plan.
const planFileKind = "lkfleet-plan"

// maxPlanFileSize bounds what Load reads. A plan for 10,000 devices with
// their scripts is a few tens of MiB. A variable so tests can lower it.
var maxPlanFileSize = 256 << 20

// planEnvelope is the file: the version, a checksum, and the plan body.
// The checksum is the sha256 of the body in compact JSON form, so the file
// may be re-indented but not edited. It detects corruption and hand edits;
// it is not a signature.
type planEnvelope struct {
	FormatVersion string          `json:"format_version"`
	Kind          string          `json:"kind"`
	Checksum      string          `json:"checksum"`
	Plan          json.RawMessage `json:"plan"`
}

// The body types mirror the in-memory ones with explicit names: the file
// format must not change when a Go field is renamed. Nothing secret is
// in a plan (the API token never reaches the planner).
type filePlan struct {
	Fleet            string       `json:"fleet"`
	File             string       `json:"file"`
	Project          string       `json:"project"`
	LiveFingerprint  string       `json:"live_fingerprint"`
	FleetFingerprint string       `json:"fleet_fingerprint"`
	Rollout          fileRollout  `json:"rollout"`
	Changes          []fileChange `json:"changes"`
	Warnings         []string     `json:"warnings"`
	NoOps            int          `json:"no_ops"`
}

type fileRollout struct {
	Waves                 [][]string    `json:"waves"`
	MaxInFlight           int           `json:"max_in_flight"`
	MaxUnavailableCount   int           `json:"max_unavailable_count"`
	MaxUnavailablePercent int           `json:"max_unavailable_percent"`
	Rebuild               spec.Strategy `json:"rebuild"`
	Canary                int           `json:"canary"`
	MaxFailures           int           `json:"max_failures"`
	// CreateBatch is omitted when 0 so that plans without batching keep
	// their bytes.
	CreateBatch int `json:"create_batch,omitempty"`
}

type fileChange struct {
	Action   Action        `json:"action"`
	Slot     string        `json:"slot"`
	Hostname string        `json:"hostname"`
	Wave     int           `json:"wave"`
	DeviceID string        `json:"device_id"`
	Desired  *fileDevice   `json:"desired"`
	Live     *fileLive     `json:"live"`
	Reasons  []string      `json:"reasons"`
	Attrs    []fileAttr    `json:"attributes"`
	Strategy spec.Strategy `json:"strategy"`
	// Reservation and ReservationAfter: hardware_file.go.
	Reservation      string `json:"reservation,omitempty"`
	ReservationAfter string `json:"reservation_after,omitempty"`
	// Keeper is Change.Keeper (omitted when empty, so plan files written
	// before it existed read the same).
	Keeper string `json:"keeper,omitempty"`
}

type fileAttr struct {
	Name   string `json:"name"`
	Before string `json:"before"`
	After  string `json:"after"`
	Forces bool   `json:"forces_replacement"`
}

type fileImage struct {
	Key          string `json:"key"`
	Name         string `json:"name"`
	BaseURL      string `json:"base_url"`
	Arch         string `json:"arch"`
	Cmdline      string `json:"cmdline"`
	IPXETemplate string `json:"ipxe_template"`
	// Store is the image's lkfleet push store, absent for images served
	// from base_url (BaseURL is then already the device's release).
	Store *fileStore `json:"store,omitempty"`
}

// fileStore is a spec.ImageStore as a saved plan carries it.
type fileStore struct {
	Default fileStoreLocation   `json:"default"`
	Mirrors []fileStoreLocation `json:"mirrors"`
	Release string              `json:"release"`
}

// fileStoreLocation converts from and to spec.StoreLocation by struct
// conversion, so a field added there cannot be left out here.
type fileStoreLocation struct {
	Zone      string `json:"zone"`
	Endpoint  string `json:"endpoint"`
	Region    string `json:"region"`
	Bucket    string `json:"bucket"`
	Prefix    string `json:"prefix"`
	PathStyle bool   `json:"path_style"`
	PublicURL string `json:"public_url"`
}

func toFileImage(im spec.Image) fileImage {
	f := fileImage{Key: im.Key, Name: im.Name, BaseURL: im.BaseURL, Arch: im.Arch, Cmdline: im.Cmdline, IPXETemplate: im.IPXETemplate}
	if st := im.Store; st != nil {
		f.Store = &fileStore{Default: fileStoreLocation(st.Default), Release: st.Release}
		for _, m := range st.Mirrors {
			f.Store.Mirrors = append(f.Store.Mirrors, fileStoreLocation(m))
		}
	}
	return f
}

func fromFileImage(f fileImage) spec.Image {
	im := spec.Image{Key: f.Key, Name: f.Name, BaseURL: f.BaseURL, Arch: f.Arch, Cmdline: f.Cmdline, IPXETemplate: f.IPXETemplate}
	if st := f.Store; st != nil {
		im.Store = &spec.ImageStore{Default: spec.StoreLocation(st.Default), Release: st.Release}
		for _, m := range st.Mirrors {
			im.Store.Mirrors = append(im.Store.Mirrors, spec.StoreLocation(m))
		}
	}
	return im
}

type fileDevice struct {
	Slot          string        `json:"slot"`
	Fleet         string        `json:"fleet"`
	Group         string        `json:"group"`
	Zone          string        `json:"zone"`
	Index         int           `json:"index"`
	Wave          int           `json:"wave"`
	Hostname      string        `json:"hostname"`
	Machine       string        `json:"machine"`
	Billing       string        `json:"billing"`
	AlwaysPXE     bool          `json:"always_pxe"`
	Arch          string        `json:"arch"`
	Image         fileImage     `json:"image"`
	UserTags      []string      `json:"user_tags"`
	KernelArgs    string        `json:"kernel_args"`
	IPXETemplate  string        `json:"ipxe_template"`
	Userdata      string        `json:"userdata"`
	IPXEScriptURL string        `json:"ipxe_script_url"`
	Script        string        `json:"script"`
	Rev           string        `json:"rev"`
	Hardware      *fileHardware `json:"hardware,omitempty"` // hardware_file.go

	// The network (network.go).
	NetworkType string     `json:"network_type,omitempty"`
	VLANs       []fileVLAN `json:"vlans,omitempty"`
}

// fileLive is a Live as a saved plan carries it: Live's own fields, which
// convert by struct conversion (a field added to Live cannot be left out),
// and for readers of the file the fleet, slot and rev its tags say, which
// loading checks against the tags.
type fileLive struct {
	fileLiveFields
	Fleet string `json:"fleet"`
	Slot  string `json:"slot"`
	Rev   string `json:"rev"`
}

type fileLiveFields struct {
	ID            string    `json:"id"`
	ShortID       string    `json:"short_id"`
	Hostname      string    `json:"hostname"`
	State         string    `json:"state"`
	Tags          []string  `json:"tags"`
	Machine       string    `json:"machine"`
	Facility      string    `json:"facility"`
	Metro         string    `json:"metro"`
	Billing       string    `json:"billing"`
	AlwaysPXE     bool      `json:"always_pxe"`
	Userdata      string    `json:"userdata"`
	ScriptURL     string    `json:"ipxe_script_url"`
	IPs           []string  `json:"ips"`
	SOS           string    `json:"sos"`
	CreatedAt     time.Time `json:"created_at"`
	UserState     string    `json:"user_state"`
	UserStateBody string    `json:"user_state_body"`
	UserStateAt   time.Time `json:"user_state_at"`
	LastEvent     string    `json:"last_event,omitempty"`
	// Reservation and spot (hardware.go), omitted when unused.
	Reservation     string    `json:"reservation,omitempty"`
	Spot            bool      `json:"spot,omitempty"`
	SpotMaxPrice    float64   `json:"spot_max_price,omitempty"`
	TerminationTime time.Time `json:"termination_time,omitzero"`

	Network *network.State `json:"network,omitempty"` // network.go
}

// Save writes p as a saved plan file (docs/plan-format.md): everything
// apply needs to carry the plan out exactly, including the rendered
// scripts, plus the fingerprints apply checks first.
func Save(w io.Writer, p Plan) error {
	body, err := json.Marshal(toFile(p))
	if err != nil {
		return fmt.Errorf("save plan for fleet %q: %w", p.Fleet, err)
	}
	env := planEnvelope{
		FormatVersion: PlanFileVersion,
		Kind:          planFileKind,
		Checksum:      bodyChecksum(body),
		Plan:          body,
	}
	out, err := json.MarshalIndent(env, "", " ")
	if err != nil {
		return fmt.Errorf("save plan for fleet %q: %w", p.Fleet, err)
	}
	out = append(out, '\n')
	if _, err := w.Write(out); err != nil {
		return fmt.Errorf("save plan for fleet %q: %w", p.Fleet, err)
	}
	return nil
}

// bodyChecksum hashes the compact form of the body, so indentation does
// not matter but any edit of a value does.
func bodyChecksum(body []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, body); err != nil {
		return ""
	}
	sum := sha256.Sum256(buf.Bytes())
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Load reads a plan file written by Save. It refuses other format
// versions, files that are not plans, and files whose content does not
// match their checksum (corrupted or edited), and checks that every change
// is one Save could have written. It never panics on bad input.
func Load(r io.Reader) (Plan, error) {
	data, err := io.ReadAll(io.LimitReader(r, int64(maxPlanFileSize)+1))
	if err != nil {
		return Plan{}, fmt.Errorf("load plan: %w", err)
	}
	if len(data) > maxPlanFileSize {
		return Plan{}, fmt.Errorf("load plan: file is larger than %d MiB; not an lkfleet plan", maxPlanFileSize>>20)
	}
	var env planEnvelope
	if err := strictDecode(data, &env); err != nil {
		return Plan{}, fmt.Errorf("load plan: not an lkfleet plan file: %w", err)
	}
	if env.Kind != planFileKind {
		return Plan{}, fmt.Errorf("load plan: not an lkfleet plan file (kind %q, want %q)", env.Kind, planFileKind)
	}
	if env.FormatVersion != PlanFileVersion {
		return Plan{}, fmt.Errorf("load plan: format version %q is not supported by this lkfleet (it reads %q); re-run lkfleet plan --out", env.FormatVersion, PlanFileVersion)
	}
	if len(env.Plan) == 0 || env.Checksum == "" {
		return Plan{}, errors.New("load plan: the file has no plan or no checksum; it is corrupted")
	}
	if got := bodyChecksum(env.Plan); got != env.Checksum {
		return Plan{}, errors.New("load plan: checksum mismatch: the file is corrupted or was edited; re-run lkfleet plan --out")
	}
	var fp filePlan
	if err := strictDecode(env.Plan, &fp); err != nil {
		return Plan{}, fmt.Errorf("load plan: invalid plan body: %w", err)
	}
	p, err := fromFile(fp)
	if err != nil {
		return Plan{}, fmt.Errorf("load plan for fleet %q: %w", fp.Fleet, err)
	}
	return p, nil
}

func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON document")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}

func toFile(p Plan) filePlan {
	fp := filePlan{
		Fleet:            p.Fleet,
		File:             p.File,
		Project:          p.Project,
		LiveFingerprint:  p.LiveFingerprint,
		FleetFingerprint: p.FleetFingerprint,
		Rollout: fileRollout{
			Waves:                 nonNilWaves(p.Rollout.Waves),
			MaxInFlight:           p.Rollout.MaxInFlight,
			MaxUnavailableCount:   p.Rollout.MaxUnavailable.Count,
			MaxUnavailablePercent: p.Rollout.MaxUnavailable.Percent,
			Rebuild:               p.Rollout.Rebuild,
			Canary:                p.Rollout.Canary,
			MaxFailures:           p.Rollout.MaxFailures,
			CreateBatch:           p.Rollout.CreateBatch,
		},
		Changes:  make([]fileChange, 0, len(p.Changes)),
		Warnings: nonNil(p.Warnings),
		NoOps:    p.NoOps,
	}
	for _, c := range p.Changes {
		fc := fileChange{
			Action:   c.Action,
			Slot:     c.Slot(),
			Hostname: c.Hostname(),
			Wave:     c.Wave,
			DeviceID: c.DeviceID(),
			Reasons:  nonNil(c.Reasons),
			Attrs:    make([]fileAttr, 0, len(c.Attrs)),
			Strategy: c.Strategy,
			Keeper:   c.Keeper,

			Reservation: c.Reservation, ReservationAfter: c.ReservationAfter,
		}
		for _, a := range c.Attrs {
			fc.Attrs = append(fc.Attrs, fileAttr(a))
		}
		if d := c.Desired; d != nil {
			fc.Desired = &fileDevice{
				Slot: d.Slot, Fleet: d.Fleet, Group: d.Group, Zone: d.Zone, Index: d.Index, Wave: d.Wave,
				Hostname: d.Hostname, Machine: d.Machine, Billing: d.Billing, AlwaysPXE: d.AlwaysPXE, Arch: d.Arch,
				Image:    toFileImage(d.Image),
				UserTags: nonNil(d.UserTags), KernelArgs: d.KernelArgs, IPXETemplate: d.IPXETemplate,
				Userdata: d.Userdata, IPXEScriptURL: d.IPXEScriptURL, Script: d.Script, Rev: d.Rev,
				Hardware:    hardwareToFile(d.Hardware),
				NetworkType: d.NetworkType, VLANs: toFileVLANs(d.VLANs),
			}
		}
		if l := c.Live; l != nil {
			fl := fileLive{fileLiveFields: fileLiveFields(*l), Fleet: l.Fleet(), Slot: l.Slot(), Rev: l.Rev()}
			fl.Tags, fl.IPs = nonNil(l.Tags), nonNil(l.IPs)
			fc.Live = &fl
		}
		fp.Changes = append(fp.Changes, fc)
	}
	return fp
}

// fromFile converts and checks a plan body. Empty lists become nil so a
// loaded plan saves back to the same bytes.
func fromFile(fp filePlan) (Plan, error) {
	if fp.Fleet == "" {
		return Plan{}, errors.New("no fleet name")
	}
	if fp.LiveFingerprint == "" || fp.FleetFingerprint == "" {
		return Plan{}, errors.New("missing fingerprint; apply could not check that the plan is current")
	}
	if fp.NoOps < 0 {
		return Plan{}, fmt.Errorf("invalid no_ops %d", fp.NoOps)
	}
	r := fp.Rollout
	if r.MaxInFlight < 0 || r.MaxUnavailableCount < 0 || r.MaxUnavailablePercent < 0 || r.MaxUnavailablePercent > 100 || r.Canary < 0 || r.MaxFailures < 0 ||
		r.CreateBatch < 0 || r.CreateBatch > spec.MaxCreateBatch {
		return Plan{}, errors.New("invalid rollout settings")
	}
	p := Plan{
		Fleet:            fp.Fleet,
		File:             fp.File,
		Project:          fp.Project,
		LiveFingerprint:  fp.LiveFingerprint,
		FleetFingerprint: fp.FleetFingerprint,
		Rollout: spec.Rollout{
			Waves:          nilIfEmptyWaves(r.Waves),
			MaxInFlight:    r.MaxInFlight,
			MaxUnavailable: spec.Budget{Count: r.MaxUnavailableCount, Percent: r.MaxUnavailablePercent},
			Rebuild:        r.Rebuild,
			Canary:         r.Canary,
			MaxFailures:    r.MaxFailures,
			CreateBatch:    r.CreateBatch,
		},
		Warnings: nilIfEmpty(fp.Warnings),
		NoOps:    fp.NoOps,
	}
	seen := map[string]bool{}
	for i, fc := range fp.Changes {
		c, err := changeFromFile(fc, p.Rollout)
		if err != nil {
			return Plan{}, fmt.Errorf("change %d (slot %q): %w", i+1, fc.Slot, err)
		}
		key := string(c.Action) + "\x00" + c.Slot() + "\x00" + c.DeviceID()
		if seen[key] {
			return Plan{}, fmt.Errorf("change %d (slot %q): listed twice", i+1, fc.Slot)
		}
		seen[key] = true
		if i > 0 && compareChanges(p.Changes[i-1], c) > 0 {
			return Plan{}, fmt.Errorf("change %d (slot %q): changes are out of order", i+1, fc.Slot)
		}
		p.Changes = append(p.Changes, c)
	}
	return p, nil
}

func changeFromFile(fc fileChange, ro spec.Rollout) (Change, error) {
	if _, ok := spec.ParseSlot(fc.Slot); !ok {
		return Change{}, errors.New("invalid slot")
	}
	if fc.Wave < 0 || (len(ro.Waves) > 0 && fc.Wave >= len(ro.Waves)) {
		return Change{}, fmt.Errorf("wave %d is not a wave of the rollout", fc.Wave)
	}
	if len(fc.Reasons) == 0 {
		return Change{}, errors.New("no reason given")
	}
	c := Change{
		Action:   fc.Action,
		Wave:     fc.Wave,
		Reasons:  nilIfEmpty(fc.Reasons),
		Strategy: fc.Strategy,
		Keeper:   fc.Keeper,

		Reservation: fc.Reservation, ReservationAfter: fc.ReservationAfter,
	}
	for _, a := range fc.Attrs {
		c.Attrs = append(c.Attrs, AttrDiff(a))
	}
	if d := fc.Desired; d != nil {
		if d.Slot != fc.Slot || d.Hostname != fc.Hostname {
			return Change{}, errors.New("desired device does not match the change's slot and hostname")
		}
		if d.Wave != fc.Wave {
			return Change{}, errors.New("desired device is in another wave than its change")
		}
		c.Desired = &spec.Device{
			Slot: d.Slot, Fleet: d.Fleet, Group: d.Group, Zone: d.Zone, Index: d.Index, Wave: d.Wave,
			Hostname: d.Hostname, Machine: d.Machine, Billing: d.Billing, AlwaysPXE: d.AlwaysPXE, Arch: d.Arch,
			Image:    fromFileImage(d.Image),
			UserTags: nilIfEmpty(d.UserTags), KernelArgs: d.KernelArgs, IPXETemplate: d.IPXETemplate,
			Userdata: d.Userdata, IPXEScriptURL: d.IPXEScriptURL, Script: d.Script, Rev: d.Rev,
			Hardware:    d.Hardware.spec(),
			NetworkType: d.NetworkType, VLANs: fromFileVLANs(d.VLANs),
		}
		if d.Rev == "" || (d.Script == "" && d.IPXEScriptURL == "") {
			return Change{}, errors.New("desired device has no rendered script or rev")
		}
	}
	if l := fc.Live; l != nil {
		if l.ID == "" || l.ID != fc.DeviceID {
			return Change{}, errors.New("live device does not match the change's device_id")
		}
		lv := Live(l.fileLiveFields)
		lv.Tags, lv.IPs = nilIfEmpty(l.Tags), nilIfEmpty(l.IPs)
		if l.Fleet != lv.Fleet() || l.Slot != lv.Slot() || l.Rev != lv.Rev() {
			return Change{}, errors.New("live device's fleet, slot and rev are not what its tags say")
		}
		c.Live = &lv
	}
	// Slot and hostname are the devices'; the file's copies must agree.
	if (c.Desired != nil || c.Live != nil) && (c.Slot() != fc.Slot || c.Hostname() != fc.Hostname) {
		return Change{}, errors.New("the change's slot and hostname are not its device's")
	}
	needDesired, needLive := true, true
	switch c.Action {
	case Create:
		needLive = false
	case Delete:
		needDesired = false
	case Replace, Update:
	case Rebuild:
		switch {
		case c.Strategy.Known():
		default:
			return Change{}, fmt.Errorf("unknown rebuild strategy %q", c.Strategy)
		}
	default:
		return Change{}, fmt.Errorf("unknown action %q", c.Action)
	}
	if c.Keeper != "" && (c.Action != Delete || c.Keeper == fc.DeviceID) {
		return Change{}, errors.New("only the delete of a duplicate names a keeper, another device than itself")
	}
	if c.Action != Rebuild && c.Strategy != "" {
		return Change{}, fmt.Errorf("a %s has no strategy", c.Action)
	}
	if needDesired != (c.Desired != nil) || needLive != (c.Live != nil) || needLive != (fc.DeviceID != "") {
		return Change{}, fmt.Errorf("a %s must carry %s", c.Action, carries(needDesired, needLive))
	}
	return c, nil
}

func carries(desired, live bool) string {
	var parts []string
	if desired {
		parts = append(parts, "the desired device")
	} else {
		parts = append(parts, "no desired device")
	}
	if live {
		parts = append(parts, "the live device and its id")
	} else {
		parts = append(parts, "no live device")
	}
	return strings.Join(parts, " and ")
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nonNilWaves(w [][]string) [][]string {
	out := make([][]string, 0, len(w))
	for _, z := range w {
		out = append(out, nonNil(z))
	}
	return out
}

func nilIfEmptyWaves(w [][]string) [][]string {
	if len(w) == 0 {
		return nil
	}
	out := make([][]string, 0, len(w))
	for _, z := range w {
		out = append(out, nilIfEmpty(z))
	}
	return out
}
