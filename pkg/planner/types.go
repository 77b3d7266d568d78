// Package planner computes, without side effects, the changes that make a
// project's live devices match a fleet's desired devices, and renders them.
package planner

import (
	"strings"
	"time"

	"github.com/lkfleet/lkfleet/pkg/network"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Live is one device as the API reports it, reduced to what planning needs.
type Live struct {
	ID       string
	ShortID  string
	Hostname string
	State    string // queued, provisioning, active, failed, deprovisioning, ...
	// Tags are the device's tags, lkfleet's own included: its fleet, slot
	// and rev are read from them (Fleet, Slot, Rev), never stored twice.
	Tags      []string
	Machine   string // plan slug
	Facility  string // facility code
	Metro     string // metro code
	Billing   string
	AlwaysPXE bool
	Userdata  string
	ScriptURL string
	IPs       []string
	SOS       string
	CreatedAt time.Time
	// UserState is the newest user state the device posted from inside
	// (running, succeeded, failed), "" if none; UserStateAt when, and
	// UserStateBody its message.
	UserState     string
	UserStateBody string
	UserStateAt   time.Time
	// LastEvent is the message of the device's newest event of any kind
	// (a provisioning step or a user state), "" if none: why a failed
	// device failed, in the words of the service.
	LastEvent string
	// Where the device came from (hardware.go): the reservation it was
	// created on, its spot bid, and when the service terminates it.
	Reservation     string
	Spot            bool
	SpotMaxPrice    float64
	TerminationTime time.Time
	// Network is the device's port state as listed (nil: the listing had
	// no ports); see pkg/network.
	Network *network.State
}

// DeviceUpdate carries the attributes one PUT changes; nil fields are left
// alone. It is the one update type: the executor builds it from a Change,
// the backend (pkg/packet) sends it.
type DeviceUpdate struct {
	Hostname      *string
	Tags          *[]string
	AlwaysPXE     *bool
	Userdata      *string
	IPXEScriptURL *string
}

// Fleet is the value of the device's lkfleet:fleet= tag, "" if foreign.
func (l Live) Fleet() string { return l.tag(spec.TagFleet) }

// Slot is the value of the device's lkfleet:slot= tag.
func (l Live) Slot() string { return l.tag(spec.TagSlot) }

// Rev is the value of the device's lkfleet:rev= tag.
func (l Live) Rev() string { return l.tag(spec.TagRev) }

// TagPending marks a device whose in-place rebuild may be unfinished: the
// PUT wrote the new boot configuration (userdata or script URL) but the
// reboot or reinstall that boots it may not have been accepted. Its two
// forms, and how a finished run's lease record settles the first, are in
// pending.go (Marker); a device whose marker is not settled is rebuilt by
// the next plan, and `status` never shows the new image as booted on it.
const TagPending = spec.TagPrefix + "pending="

// Pending is the value of the device's lkfleet:pending= tag ("" if none).
func (l Live) Pending() string { return l.tag(TagPending) }

// tag is the value of the last tag with prefix, "" if none.
func (l Live) tag(prefix string) string {
	for i := len(l.Tags) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(l.Tags[i], prefix); ok {
			return v
		}
	}
	return ""
}

// Action is what a Change does.
type Action string

// The actions, in the order a plan lists them for one slot.
const (
	NoOp    Action = "no-op"
	Create  Action = "create"
	Delete  Action = "delete"
	Replace Action = "replace"
	Rebuild Action = "rebuild"
	Update  Action = "update"
)

// Change is one planned change to one slot. Its slot, hostname and device
// id are not stored: they are the desired and live devices' (see Slot,
// Hostname and DeviceID), so they cannot disagree with them.
type Change struct {
	Action Action
	// Wave is the wave the change runs in: the desired device's, and for
	// the delete of a slot no longer desired the wave of its zone (else
	// the last). It is the plan's scheduling decision, which the live
	// device does not carry.
	Wave int
	// Desired is the device the slot should become (nil for delete).
	Desired *spec.Device
	// Live is the device as found (nil for create).
	Live *Live
	// Reasons explain the change to a person, e.g. `machine: c3.small.x86 -> m3.large.x86 (forces replacement)`.
	Reasons []string
	// Attrs lists attribute differences for rendering.
	Attrs []AttrDiff
	// Strategy is the rebuild strategy of a rebuild ("" otherwise).
	Strategy spec.Strategy
	// Reservation is the hardware reservation the new device takes, and
	// ReservationAfter the device whose deprovisioning frees it first
	// ("" = free now); see AssignHardware.
	Reservation      string
	ReservationAfter string
	// Keeper is, for the delete of a duplicate, the id of the device the
	// slot keeps ("" for every other change). The executor deletes a
	// duplicate that is not failed only once another device of its slot
	// is ready, so a slot never loses its last serving device.
	Keeper string
}

// Slot is the slot the change acts on.
func (c Change) Slot() string {
	switch {
	case c.Desired != nil:
		return c.Desired.Slot
	case c.Live != nil:
		return c.Live.Slot()
	}
	return ""
}

// Hostname is the desired hostname; the live one for deletes.
func (c Change) Hostname() string {
	switch {
	case c.Desired != nil:
		return c.Desired.Hostname
	case c.Live != nil:
		return c.Live.Hostname
	}
	return ""
}

// DeviceID is the live device the change acts on ("" for create).
func (c Change) DeviceID() string {
	if c.Live != nil {
		return c.Live.ID
	}
	return ""
}

// AttrDiff is one attribute that differs.
type AttrDiff struct {
	Name   string
	Before string
	After  string
	// Forces is true when this difference forces a replacement.
	Forces bool
}

// Plan is the ordered list of changes plus what a person should know.
type Plan struct {
	Fleet    string
	File     string
	Project  string
	Changes  []Change // sorted by wave, then slot, then action
	Warnings []string
	// Fingerprint of the live devices the plan was computed from, and of the
	// fleet file (see Fingerprint).
	LiveFingerprint  string
	FleetFingerprint string
	Rollout          spec.Rollout
	// NoOps counts the desired devices that already match: they have no
	// Change, but a person (and Summary) wants to know how many there are.
	NoOps int
	// Cost is the fleet's hourly cost before and after (nil = unknown).
	Cost *Cost
}

// HasChanges reports whether applying the plan would do anything.
func (p Plan) HasChanges() bool { return len(p.Changes) > 0 }

// Input is everything Compute looks at. It is plain data: the caller does
// the listing and the rendering of scripts.
type Input struct {
	Fleet *spec.Fleet
	// Desired devices, rendered (Script and Rev set; an empty Rev is
	// computed with ComputeRev).
	Desired []spec.Device
	// Live devices of the fleet (the tag-filtered listing).
	Live []Live
	// Foreign devices (optional): devices without this fleet's tag. They are
	// never changed; they only produce hostname-clash warnings.
	Foreign []Live
	// Rebuild lists targets to rebuild even when unchanged: "all", a group
	// name or a slot (apply --rebuild).
	Rebuild []string
	// Replace lists slots to replace even when unchanged (apply --replace).
	Replace []string
	// FleetFingerprint is recorded in the plan as is (see FleetFingerprint).
	FleetFingerprint string
	// Catalogue is optional; when set it maps a live facility to its metro
	// for devices whose listing omitted the metro.
	Catalogue *Catalogue
	// Runs are the finished runs the fleet's lease record lists: they
	// settle the pending markers their rebuilds left (see Marker). The
	// zero value settles none.
	Runs Runs
}

// KnownAfterApply is the AttrDiff.After of a value only the API will know,
// such as the id of a replacement.
const KnownAfterApply = "(known after apply)"

// Summary counts a plan's changes the way Terraform does: a replacement
// adds one device and destroys one, so it counts in Add and in Destroy.
// A rebuild counts in Rebuild whatever its strategy, an update in Change.
type Summary struct {
	Add     int
	Rebuild int
	Change  int
	Destroy int
	// Unchanged is the number of desired devices that need nothing.
	Unchanged int
}

// Summary counts the plan's changes (see Summary).
func (p Plan) Summary() Summary {
	s := Summary{Unchanged: p.NoOps}
	for _, c := range p.Changes {
		switch c.Action {
		case Create:
			s.Add++
		case Delete:
			s.Destroy++
		case Replace:
			s.Add++
			s.Destroy++
		case Rebuild:
			s.Rebuild++
		case Update:
			s.Change++
		}
	}
	return s
}
