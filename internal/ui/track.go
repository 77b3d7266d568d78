package ui

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/lkfleet/lkfleet/pkg/executor"
	"github.com/lkfleet/lkfleet/pkg/planner"
)

// status is where one planned change stands, as the live counts group it.
type status int

const (
	stQueued       status = iota // not sent yet, or the API says queued
	stProvisioning               // sent and in progress (any transitional state)
	stDone                       // ready (or, for deletes and updates, accepted)
	stFailed                     // refused by the API or ended failed
)

// item is one planned change being followed through the event stream.
type item struct {
	slot     string
	hostname string
	deviceID string
	action   planner.Action
	st       status
	// w and pos place the item: its wave and its index in w.items, the
	// order find breaks ties in.
	w   *waveState
	pos int
}

// waveState follows the changes of one wave. It is guarded by the
// Reporter's lock; the live view reads only snap, which is published
// atomically, because mpb calls decorators from its own goroutines while
// an Event may hold the lock and wait for mpb.
type waveState struct {
	index int
	zones string
	items []*item
	// count holds how many items are in each status, and deletes how many
	// are deletes, kept up to date so an event costs O(1), not a scan of
	// the wave (10,000 items × 10,000 events was seconds of CPU).
	count    [stFailed + 1]int
	deletes  int
	started  time.Time
	finished time.Time
	snap     atomic.Pointer[waveSnap]
}

// waveSnap is an immutable copy of a wave's counts for rendering.
type waveSnap struct {
	label                      string
	total                      int
	queued, prov, done, failed int
	started, finished          time.Time
	deletesOnly                bool
}

// tracker maps events to planned changes, wave by wave.
type tracker struct {
	waves []*waveState // sorted by index
	// bySlot and byDevice index the items for find. byDevice may hold
	// items whose device id changed since; find checks.
	bySlot   map[string][]*item
	byDevice map[string][]*item
}

// add registers a new item in wave w.
func (t *tracker) add(w *waveState, it *item) {
	if t.bySlot == nil {
		t.bySlot, t.byDevice = map[string][]*item{}, map[string][]*item{}
	}
	it.w, it.pos = w, len(w.items)
	w.items = append(w.items, it)
	w.count[it.st]++
	if it.action == planner.Delete {
		w.deletes++
	}
	if it.slot != "" {
		t.bySlot[it.slot] = append(t.bySlot[it.slot], it)
	}
	t.setDevice(it, it.deviceID)
}

// setDevice records the device id of it.
func (t *tracker) setDevice(it *item, id string) {
	it.deviceID = id
	if id != "" && !slices.Contains(t.byDevice[id], it) {
		t.byDevice[id] = append(t.byDevice[id], it)
	}
}

// setStatus moves it to status st, keeping its wave's counts.
func (it *item) setStatus(st status) {
	it.w.count[it.st]--
	it.st = st
	it.w.count[st]++
}

// setPlan registers every change that does something, per wave.
func (t *tracker) setPlan(p planner.Plan) {
	// A change without a wave runs in a trailing wave of its own, as the
	// executor schedules it; its events still carry wave -1 and are found
	// by slot.
	trailing := len(p.Rollout.Waves)
	for _, c := range p.Changes {
		trailing = max(trailing, c.Wave+1)
	}
	for _, c := range p.Changes {
		if c.Action == planner.NoOp || c.Action == "" {
			continue
		}
		wi := c.Wave
		if wi < 0 {
			wi = trailing
		}
		t.add(t.wave(wi, true), &item{slot: c.Slot(), hostname: c.Hostname(), deviceID: c.DeviceID(), action: c.Action})
	}
	for _, w := range t.waves {
		if w.zones == "" && w.index < len(p.Rollout.Waves) {
			w.zones = strings.Join(p.Rollout.Waves[w.index], ", ")
		}
		if w.zones == "" {
			w.zones = zonesOf(p.Changes, w.index)
		}
		w.publish()
	}
}

// zonesOf lists, in first-seen order, the zones a wave's changes touch.
func zonesOf(changes []planner.Change, wave int) string {
	var zones []string
	for _, c := range changes {
		if c.Wave != wave || c.Action == planner.NoOp {
			continue
		}
		z := ""
		switch {
		case c.Desired != nil:
			z = c.Desired.Zone
		case c.Live != nil && c.Live.Facility != "":
			z = c.Live.Facility
		case c.Live != nil:
			z = c.Live.Metro
		}
		if z != "" && !slices.Contains(zones, z) {
			zones = append(zones, z)
		}
	}
	return strings.Join(zones, ", ")
}

// wave returns the state of wave i, creating it (in order) when asked.
func (t *tracker) wave(i int, create bool) *waveState {
	if i < 0 {
		return nil
	}
	at, found := slices.BinarySearchFunc(t.waves, i, func(w *waveState, i int) int { return w.index - i })
	if found {
		return t.waves[at]
	}
	if !create {
		return nil
	}
	w := &waveState{index: i}
	t.waves = slices.Insert(t.waves, at, w)
	return w
}

// apply updates the counts for e and returns the wave it touched, nil if
// none.
func (t *tracker) apply(e executor.Event) *waveState {
	switch e.Kind {
	case executor.WaveStarted:
		w := t.wave(e.Wave, false)
		if w == nil {
			return nil
		}
		if w.started.IsZero() {
			w.started = e.Time
		}
		if w.zones == "" {
			w.zones = clean(e.Message)
		}
		w.publish()
		return w
	case executor.WaveDone:
		w := t.wave(e.Wave, false)
		if w == nil {
			return nil
		}
		// Without --wait the executor never reports devices ready: a wave
		// that is over settles whatever did not fail.
		for _, it := range w.items {
			if it.st != stFailed {
				it.setStatus(stDone)
			}
		}
		w.finish(e.Time)
		w.publish()
		return w
	case executor.Halted, executor.Info:
		return nil
	}
	if e.Slot == "" && e.DeviceID == "" {
		return nil
	}
	w, it := t.find(e)
	if it == nil {
		if w = t.wave(e.Wave, true); w == nil {
			return nil
		}
		it = &item{slot: e.Slot, hostname: e.Hostname, action: e.Action}
		t.add(w, it)
	}
	if w.started.IsZero() {
		w.started = e.Time
	}
	if e.DeviceID != "" && (it.deviceID == "" || e.Kind == executor.ChangeDone) {
		t.setDevice(it, e.DeviceID)
	}
	if e.Hostname != "" {
		it.hostname = e.Hostname
	}
	it.setStatus(next(it.st, it.action, e))
	if w.settled() {
		w.finish(e.Time)
	} else {
		w.finished = time.Time{}
	}
	w.publish()
	return w
}

// next is the status after e. Only a failure or a retry moves a change
// out of done, so late state reports cannot make the counts go backwards.
func next(cur status, a planner.Action, e executor.Event) status {
	switch e.Kind {
	case executor.ChangeFailed, executor.DeviceFailed:
		return stFailed
	case executor.Retrying:
		return stQueued
	case executor.DeviceReady:
		return stDone
	}
	if cur == stDone {
		return cur
	}
	switch e.Kind {
	case executor.ChangeStarted:
		if cur == stFailed {
			return stQueued
		}
		return max(cur, stQueued)
	case executor.ChangeDone:
		switch a {
		case planner.Delete, planner.Update:
			return stDone
		case planner.Create, planner.Replace:
			// A new device starts out queued at the API.
			if cur == stFailed {
				return stQueued
			}
			return max(cur, stQueued)
		}
		return stProvisioning
	case executor.DeviceState:
		switch e.State {
		case "queued":
			return stQueued
		case "failed":
			return stFailed
		case "":
			return cur
		}
		return stProvisioning
	}
	return cur
}

// find locates the change e is about: by slot in e's wave (or any wave),
// disambiguated by action and then device id when a slot has several
// changes (a duplicate being deleted next to the device that stays). Ties
// go to the earliest wave, then the earliest item. It looks only at the
// items of e's slot (or device), never at every item.
func (t *tracker) find(e executor.Event) (*waveState, *item) {
	var cands []*item
	switch {
	case e.Slot != "":
		cands = t.bySlot[e.Slot]
	case e.DeviceID != "":
		cands = t.byDevice[e.DeviceID]
	}
	var best *item
	bestScore := -1
	for _, it := range cands {
		if e.Wave >= 0 && it.w.index != e.Wave {
			continue
		}
		if e.Slot == "" && it.deviceID != e.DeviceID {
			continue // an index entry from before the id changed
		}
		score := 1
		if e.Action != "" && it.action == e.Action {
			score += 2
		}
		if e.DeviceID != "" && it.deviceID == e.DeviceID {
			score += 4
		}
		if score > bestScore || (score == bestScore && before(it, best)) {
			best, bestScore = it, score
		}
	}
	if best == nil {
		return nil, nil
	}
	return best.w, best
}

// before reports whether a comes before b in wave, then item order.
func before(a, b *item) bool {
	if a.w.index != b.w.index {
		return a.w.index < b.w.index
	}
	return a.pos < b.pos
}

func (w *waveState) settled() bool {
	return len(w.items) > 0 && w.count[stDone]+w.count[stFailed] == len(w.items)
}

func (w *waveState) finish(at time.Time) {
	if w.finished.IsZero() {
		w.finished = at
	}
}

// counts returns queued, provisioning, done and failed.
func (w *waveState) counts() (q, p, d, f int) {
	return w.count[stQueued], w.count[stProvisioning], w.count[stDone], w.count[stFailed]
}

// summary is the short account of a wave used in plain and JSON lines:
// "3 changes in ams1" while it runs, "2 ready, 1 failed" when it is done.
func (w *waveState) summary(done bool) string {
	if w == nil {
		return ""
	}
	if done {
		_, _, d, f := w.counts()
		return fmt.Sprintf("%d of %d changes completed, %d failed", d, len(w.items), f)
	}
	s := plural(len(w.items), "change", "changes")
	if w.zones != "" {
		s += " in " + w.zones
	}
	return s
}

func (w *waveState) publish() {
	q, p, d, f := w.counts()
	deletes := len(w.items) > 0 && w.deletes == len(w.items)
	label := waveLabel(w.index)
	if w.zones != "" {
		label += "  " + w.zones
	}
	w.snap.Store(&waveSnap{
		label: label, total: len(w.items),
		queued: q, prov: p, done: d, failed: f,
		started: w.started, finished: w.finished,
		deletesOnly: deletes,
	})
}
