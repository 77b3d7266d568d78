// Package spec turns a fleet file into validated plain values and expands
// them into the devices the fleet wants. It does no I/O beyond the bytes it
// is handed and never reads the clock.
package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// APIVersion is the only fleet file version this build understands.
const APIVersion = "lkfleet/v1"

// Tag prefixes lkfleet writes on the devices it owns. The prefix "lkfleet:"
// is reserved: user tags may not start with it.
const (
	TagPrefix   = "lkfleet:"
	TagFleet    = "lkfleet:fleet="
	TagSlot     = "lkfleet:slot="
	TagRev      = "lkfleet:rev="
	RevLength   = 12
	DefaultZone = "ams1"
	DefaultMach = "baremetal_0"
	DefaultHost = "{{.Group}}-{{.Zone}}-{{.Index}}"
	DefaultBill = "hourly"
	ArchX86     = "x86_64"
	ArchARM     = "aarch64"
)

// Fleet is a validated fleet file. It carries no serialization tags: the
// versioned file format is decoded into private types and converted.
type Fleet struct {
	// File is the path the fleet was loaded from (for messages).
	File string

	Name    string
	Project string
	// Images in key order.
	Images []Image
	// Groups in file order.
	Groups  []Group
	Rollout Rollout
}

// Image is where one LinuxKit image is served.
type Image struct {
	Key     string
	Name    string // file prefix; defaults to Key
	BaseURL string // no trailing slash
	Arch    string // "" = derive from the machine type
	Cmdline string // "" = fetch <BaseURL>/<Name>-cmdline
	// IPXETemplate is an inline custom script template ("" = the default
	// script). A group's template wins over its image's.
	IPXETemplate string
	// Store is set when the image is published with lkfleet push (then
	// BaseURL is the release's URL on the default store); see store.go.
	Store *ImageStore
}

// KernelURL is the URL of the image's kernel.
func (i Image) KernelURL() string { return i.BaseURL + "/" + i.Name + "-kernel" }

// InitrdURL is the URL of the image's initrd.
func (i Image) InitrdURL() string { return i.BaseURL + "/" + i.Name + "-initrd.img" }

// CmdlineURL is the URL of the image's kernel command line file.
func (i Image) CmdlineURL() string { return i.BaseURL + "/" + i.Name + "-cmdline" }

// Group is a set of identical devices spread over zones.
type Group struct {
	Name      string
	Image     string // key into Fleet.Images
	Count     int    // devices per zone
	Zones     []string
	Machine   string
	Billing   string
	AlwaysPXE bool
	Tags      []string
	// Templates, unrendered (validated to parse).
	Hostname      string
	KernelArgs    string
	IPXETemplate  string // inline text (file paths are read at load time)
	Userdata      string
	IPXEScriptURL string
	// Hardware: reservations or spot (hardware.go).
	Hardware Hardware `json:",omitzero"` // omitted when on demand: golden files stay as they were
	// NetworkType is one of the pkg/network types, "" when not managed;
	// VLANs the virtual networks its ports carry.
	NetworkType string
	VLANs       []VLAN
}

// Budget is a count or a percentage of a wave's devices.
type Budget struct {
	Count   int
	Percent int // used when > 0
}

// Of resolves the budget against n devices; the result is at least 1.
func (b Budget) Of(n int) int {
	v := b.Count
	if b.Percent > 0 {
		v = n * b.Percent / 100
	}
	if v < 1 {
		v = 1
	}
	return v
}

// Rollout says how apply orders and paces changes.
type Rollout struct {
	// Waves lists zones per wave, in order. After Load it always covers
	// every zone of the fleet: unlisted zones form a last wave.
	Waves          [][]string
	MaxInFlight    int
	MaxUnavailable Budget
	Rebuild        Strategy
	Canary         int
	MaxFailures    int
	// CreateBatch is how many creates of one wave may share one batch
	// request (POST /projects/{id}/devices/batch); 0 = every device is
	// created by a request of its own. See docs/executor.md.
	CreateBatch int
}

// MaxCreateBatch is the largest rollout.create_batch: the simulator (and,
// as far as is known, the service) refuses a batch request that creates
// more than 100 devices.
const MaxCreateBatch = 100

// WaveOf returns the index of the wave that holds zone, or -1.
func (r Rollout) WaveOf(zone string) int {
	for i, w := range r.Waves {
		for _, z := range w {
			if z == zone {
				return i
			}
		}
	}
	return -1
}

// Device is one desired device: the expansion of a group in one zone at one
// index. Expand fills everything but Script and Rev, which pkg/ipxe renders.
type Device struct {
	Slot      string // "<group>/<zone>/<index>": the identity
	Fleet     string
	Group     string
	Zone      string
	Index     int // from 1
	Wave      int // index into Rollout.Waves
	Hostname  string
	Machine   string
	Billing   string
	AlwaysPXE bool
	Arch      string // resolved: image arch, else from the machine slug
	Image     Image
	// UserTags are the group's tags; Tags() adds lkfleet's own.
	UserTags []string

	// Unrendered per-device templates.
	KernelArgs   string
	IPXETemplate string

	// Userdata is the user's own userdata (only with IPXEScriptURL).
	Userdata string
	// IPXEScriptURL is the rendered script URL, "" when the script travels
	// as userdata.
	IPXEScriptURL string

	// NetworkType and VLANs are the group's (see Group).
	NetworkType string
	VLANs       []VLAN

	// Filled by pkg/ipxe.
	Script string // the rendered iPXE script
	Rev    string // 12 hex chars over the boot configuration

	// Hardware is the group's reservations or spot bid (hardware.go). It
	// is not part of Rev: it decides how a device is created, and a device
	// keeps what it was created with until it is replaced for other reasons.
	Hardware Hardware `json:",omitzero"` // omitted when on demand: golden files stay as they were
}

// SlotName builds a slot identity (Slot.String of its parts).
func SlotName(group, zone string, index int) string {
	return Slot{Group: group, Zone: zone, Index: index}.String()
}

// APIUserdata is the userdata the device is created with: the script itself
// unless the script is served from IPXEScriptURL.
func (d Device) APIUserdata() string {
	if d.IPXEScriptURL != "" {
		return d.Userdata
	}
	return d.Script
}

// Tags is the full tag list sent to the API: user tags (sorted, as given)
// followed by the fleet, slot and rev tags.
func (d Device) Tags() []string {
	tags := make([]string, 0, len(d.UserTags)+3)
	tags = append(tags, d.UserTags...)
	tags = append(tags, TagFleet+d.Fleet, TagSlot+d.Slot)
	if d.Rev != "" {
		tags = append(tags, TagRev+d.Rev)
	}
	return tags
}

// BootConfig is what a device's lkfleet:rev tag covers: everything that
// decides what it boots and where.
type BootConfig struct {
	Script    string // the rendered iPXE script
	Userdata  string // what the API holds as userdata (APIUserdata)
	ScriptURL string
	Machine   string
	Zone      string
	Billing   string
	AlwaysPXE bool
}

// Rev hashes the boot configuration into the value of the lkfleet:rev
// tag. Any change to a field changes the rev.
func (b BootConfig) Rev() string {
	h := sha256.New()
	for _, s := range []string{b.Script, b.Userdata, b.ScriptURL, b.Machine, b.Zone, b.Billing, strconv.FormatBool(b.AlwaysPXE)} {
		// Length-prefix each field so no two inputs collide by concatenation.
		h.Write([]byte(strconv.Itoa(len(s)) + ":" + s + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil))[:RevLength]
}

// BootConfig is the device's boot configuration.
func (d Device) BootConfig() BootConfig {
	return BootConfig{Script: d.Script, Userdata: d.APIUserdata(), ScriptURL: d.IPXEScriptURL,
		Machine: d.Machine, Zone: d.Zone, Billing: d.Billing, AlwaysPXE: d.AlwaysPXE}
}

// ComputeRev is the rev of the device's own boot configuration.
func (d Device) ComputeRev() string { return d.BootConfig().Rev() }

// NormalizeArch maps the spellings an API or a user may use to ArchX86 or
// ArchARM, and anything else to "". It is the one place that knows them:
// rendering (pkg/ipxe) and the catalogue check (pkg/planner) both use it.
func NormalizeArch(s string) string {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "x86_64", "amd64", "x86", "x86-64":
		return ArchX86
	case "aarch64", "arm64", "arm":
		return ArchARM
	}
	return ""
}

// ArchOfMachine guesses an architecture from a plan slug when neither the
// image nor the API catalogue says: baremetal_2a*, *.arm*, *arm64 are arm.
func ArchOfMachine(machine string) string {
	m := strings.ToLower(machine)
	if strings.HasPrefix(m, "baremetal_2a") || strings.Contains(m, ".arm") || strings.HasSuffix(m, "arm64") {
		return ArchARM
	}
	return ArchX86
}
