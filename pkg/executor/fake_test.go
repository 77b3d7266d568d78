package executor

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// fakeCloud is an in-memory Cloud whose devices move through their states
// on the (synctest) clock: a create provisions for `provision`, then the
// image boots for `boot` and posts its user state. Faults are injected per
// slot. Every call is logged with its time.
type fakeCloud struct {
	provision, boot, deprovision time.Duration
	callDelay                    time.Duration // latency of every mutation
	listLag                      time.Duration // new devices hidden from listings this long

	mu          sync.Mutex
	devs        []*fdev
	seq         int
	calls       []fcall
	inFlight    int
	maxInFlight int
	lists       int
	// createFaults[slot] is consumed one per Create of the slot.
	createFaults map[string][]fault
	// provFail[slot] provisions end in state failed; bootFail[slot] boots
	// post user state failed.
	provFail map[string]int
	bootFail map[string]int
	// actionErr fails every Action call; ambiguousActions fail that many
	// with an ambiguous error (without acting).
	actionErr        error
	ambiguousActions int
	// listErr, when set, fails every List (an API outage).
	listErr error
	// created records every device Create was asked for.
	created []spec.Device
	// vanish[slot] creates of the slot make a device that is deleted at
	// once (behind the API's back), one per Create.
	vanish map[string]int
	// actionGate, when set, holds every action until it is closed: the
	// moment a kill -9 between a rebuild's PUT and its reboot would freeze.
	actionGate chan struct{}
}

type fault int

const (
	ambCreated fault = iota + 1 // device created, then the response fails
	ambAbsent                   // nothing created, the response fails
	refused                     // a plain 422
)

type ambiguousErr struct{ msg string }

func (e *ambiguousErr) Error() string   { return e.msg }
func (e *ambiguousErr) Ambiguous() bool { return true }

type fcall struct {
	at       time.Time
	op, id   string
	slot     string
	action   string
	upd      planner.DeviceUpdate
	finished time.Time
}

type tstate struct {
	at    time.Time
	state string
}

type tuser struct {
	at          time.Time
	state, body string
}

type interval struct{ from, to time.Time }

type fdev struct {
	id, slot, host string
	tags           []string
	alwaysPXE      bool
	userdata       string
	created        time.Time
	deleted        time.Time
	states         []tstate
	users          []tuser
	down           []interval // out of service (provisioning, rebooting, deleted)
}

var forever = time.Unix(math.MaxInt32*4, 0)

func newFake() *fakeCloud {
	return &fakeCloud{
		provision: 30 * time.Second, boot: 5 * time.Second, deprovision: 2 * time.Second,
		callDelay:    100 * time.Millisecond,
		createFaults: map[string][]fault{}, provFail: map[string]int{}, bootFail: map[string]int{},
		vanish: map[string]int{},
	}
}

// seed adds an active, booted device of slot as of an hour ago.
func (f *fakeCloud) seed(slot, rev string) planner.Live {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := time.Now().Add(-time.Hour)
	f.seq++
	d := &fdev{id: fmt.Sprintf("old-%d", f.seq), slot: slot, host: hostOf(slot), alwaysPXE: true,
		tags: []string{spec.TagFleet + "lab", spec.TagSlot + slot, spec.TagRev + rev}, created: t,
		states: []tstate{{t, "active"}}, users: []tuser{{t, "succeeded", ""}}}
	f.devs = append(f.devs, d)
	return f.liveAt(d, time.Now())
}

func hostOf(slot string) string { return strings.ReplaceAll(slot, "/", "-") }

// begin logs a mutation and counts it in flight for callDelay. Like a
// real client it gives up when ctx ends first; then the call did nothing.
func (f *fakeCloud) begin(ctx context.Context, c fcall) (int, error) {
	f.mu.Lock()
	c.at = time.Now()
	f.calls = append(f.calls, c)
	n := len(f.calls) - 1
	f.inFlight++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	f.mu.Unlock()
	select {
	case <-time.After(f.callDelay):
		return n, nil
	case <-ctx.Done():
		f.mu.Lock()
		f.end(n)
		f.calls[n].op += " (abandoned)"
		f.mu.Unlock()
		return n, ctx.Err()
	}
}

// end must be called with f.mu held.
func (f *fakeCloud) end(n int) {
	f.inFlight--
	f.calls[n].finished = time.Now()
}

func (f *fakeCloud) provisionTimeline(d *fdev, t time.Time) {
	ready := t.Add(f.provision)
	if f.provFail[d.slot] > 0 {
		f.provFail[d.slot]--
		d.states = append(d.states, tstate{t, "provisioning"}, tstate{ready, "failed"})
		d.down = append(d.down, interval{t, forever})
		return
	}
	d.states = append(d.states, tstate{t, "provisioning"}, tstate{ready, "active"})
	f.bootTimeline(d, t, ready)
}

// bootTimeline posts the boot's user state boot after from; the device is
// out of service from down until then.
func (f *fakeCloud) bootTimeline(d *fdev, down, from time.Time) {
	at := from.Add(f.boot)
	if f.bootFail[d.slot] > 0 {
		f.bootFail[d.slot]--
		d.users = append(d.users, tuser{at, "failed", "kernel: 404 Not Found"})
		d.down = append(d.down, interval{down, forever})
		return
	}
	d.users = append(d.users, tuser{at, "succeeded", ""})
	d.down = append(d.down, interval{down, at})
}

func (f *fakeCloud) Create(ctx context.Context, d spec.Device) (planner.Live, error) {
	n, err := f.begin(ctx, fcall{op: "create", slot: d.Slot})
	if err != nil {
		return planner.Live{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.end(n)
	f.created = append(f.created, d)
	var ft fault
	if q := f.createFaults[d.Slot]; len(q) > 0 {
		ft, f.createFaults[d.Slot] = q[0], q[1:]
	}
	switch ft {
	case refused:
		return planner.Live{}, fmt.Errorf("422 plan not available")
	case ambAbsent:
		return planner.Live{}, &ambiguousErr{"502 bad gateway"}
	}
	now := time.Now()
	f.seq++
	dev := &fdev{id: fmt.Sprintf("dev-%d", f.seq), slot: d.Slot, host: d.Hostname, tags: d.Tags(),
		alwaysPXE: d.AlwaysPXE, userdata: d.APIUserdata(), created: now}
	f.provisionTimeline(dev, now)
	if f.vanish[d.Slot] > 0 {
		f.vanish[d.Slot]--
		dev.deleted = now
		dev.states = append(dev.states, tstate{now, "deprovisioning"})
	}
	f.devs = append(f.devs, dev)
	f.calls[n].id = dev.id
	if ft == ambCreated {
		return planner.Live{}, &ambiguousErr{"read: connection reset by peer"}
	}
	return f.liveAt(dev, now), nil
}

func (f *fakeCloud) find(id string) *fdev {
	for _, d := range f.devs {
		if d.id == id && d.deleted.IsZero() {
			return d
		}
	}
	return nil
}

func (f *fakeCloud) Update(ctx context.Context, id string, u planner.DeviceUpdate) error {
	n, err := f.begin(ctx, fcall{op: "update", id: id, upd: u})
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.end(n)
	d := f.find(id)
	if d == nil {
		return errors.New("404 not found")
	}
	f.calls[n].slot = d.slot
	if u.Hostname != nil {
		d.host = *u.Hostname
	}
	if u.Tags != nil {
		d.tags = append([]string{}, *u.Tags...)
	}
	if u.AlwaysPXE != nil {
		d.alwaysPXE = *u.AlwaysPXE
	}
	if u.Userdata != nil {
		d.userdata = *u.Userdata
	}
	return nil
}

func (f *fakeCloud) Reboot(ctx context.Context, id string) error { return f.action(ctx, id, "reboot") }

func (f *fakeCloud) Reinstall(ctx context.Context, id string) error {
	return f.action(ctx, id, "reinstall")
}

func (f *fakeCloud) action(ctx context.Context, id, action string) error {
	n, err := f.begin(ctx, fcall{op: "action", id: id, action: action})
	if err != nil {
		return err
	}
	if f.actionGate != nil {
		<-f.actionGate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.end(n)
	d := f.find(id)
	if d == nil {
		return errors.New("404 not found")
	}
	f.calls[n].slot = d.slot
	if f.actionErr != nil {
		return f.actionErr
	}
	if f.ambiguousActions > 0 {
		f.ambiguousActions--
		return &ambiguousErr{"502 bad gateway"}
	}
	now := time.Now()
	switch action {
	case "reboot":
		// The state stays active; only the new user state tells the boot.
		f.bootTimeline(d, now, now)
	case "reinstall":
		f.provisionTimeline(d, now)
		d.states[len(d.states)-2].state = "reinstalling" // not "provisioning"
	default:
		return fmt.Errorf("422 unknown action %q", action)
	}
	return nil
}

func (f *fakeCloud) Delete(ctx context.Context, id string) error {
	n, err := f.begin(ctx, fcall{op: "delete", id: id})
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.end(n)
	d := f.find(id)
	if d == nil {
		return nil // 404: already gone
	}
	f.calls[n].slot = d.slot
	now := time.Now()
	d.deleted = now
	d.states = append(d.states, tstate{now, "deprovisioning"})
	d.down = append(d.down, interval{now, forever})
	return nil
}

func (f *fakeCloud) List(context.Context) ([]planner.Live, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	if f.listErr != nil {
		return nil, f.listErr
	}
	now := time.Now()
	var out []planner.Live
	for _, d := range f.devs {
		if now.Before(d.created.Add(f.listLag)) {
			continue
		}
		if !d.deleted.IsZero() && !now.Before(d.deleted.Add(f.deprovision)) {
			continue
		}
		out = append(out, f.liveAt(d, now))
	}
	return out, nil
}

func (f *fakeCloud) liveAt(d *fdev, t time.Time) planner.Live {
	l := planner.Live{ID: d.id, Hostname: d.host, Tags: append([]string{}, d.tags...),
		AlwaysPXE: d.alwaysPXE, Userdata: d.userdata, CreatedAt: d.created}
	for _, s := range d.states {
		if !s.at.After(t) {
			l.State = s.state
		}
	}
	for _, u := range d.users {
		if !u.at.After(t) {
			l.UserState, l.UserStateBody, l.UserStateAt = u.state, u.body, u.at
		}
	}
	return l
}

// log returns a copy of the call log.
func (f *fakeCloud) log() []fcall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fcall{}, f.calls...)
}

func (f *fakeCloud) ops(slot string) []string {
	var out []string
	for _, c := range f.log() {
		if c.slot == slot {
			op := c.op
			if c.action != "" {
				op += ":" + c.action
			}
			out = append(out, op)
		}
	}
	return out
}

// liveBySlot lists the devices not deleted, per slot.
func (f *fakeCloud) liveBySlot() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string][]string{}
	for _, d := range f.devs {
		if d.deleted.IsZero() {
			m[d.slot] = append(m[d.slot], d.id)
		}
	}
	return m
}

func (f *fakeCloud) dev(id string) *fdev {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, d := range f.devs {
		if d.id == id {
			return d
		}
	}
	return nil
}

// readyAt is when device id first served (booted) after t.
func (f *fakeCloud) bootedAfter(id string, t time.Time) time.Time {
	d := f.dev(id)
	for _, u := range d.users {
		if u.at.After(t) && u.state == "succeeded" {
			return u.at
		}
	}
	return time.Time{}
}

// maxUnavailable is the largest number of slots, among those serving at
// start, that had no device in service at any one instant.
func (f *fakeCloud) maxUnavailable(slots []string, start time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var points []time.Time
	for _, d := range f.devs {
		points = append(points, d.created)
		for _, iv := range d.down {
			points = append(points, iv.from, iv.to)
		}
	}
	sort.Slice(points, func(i, j int) bool { return points[i].Before(points[j]) })
	up := func(d *fdev, t time.Time) bool {
		if t.Before(d.created) {
			return false
		}
		for _, iv := range d.down {
			if !t.Before(iv.from) && t.Before(iv.to) {
				return false
			}
		}
		return true
	}
	worst := 0
	for _, t := range points {
		if t.Before(start) || t.Equal(forever) {
			continue
		}
		n := 0
		for _, s := range slots {
			ok := false
			for _, d := range f.devs {
				if d.slot == s && up(d, t) {
					ok = true
				}
			}
			if !ok {
				n++
			}
		}
		worst = max(worst, n)
	}
	return worst
}
