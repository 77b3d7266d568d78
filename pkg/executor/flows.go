package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// maxCreateAttempts bounds creates of one slot whose outcome stayed
// ambiguous after the lookup: past it the change fails and the next apply
// (which lists first) sorts it out.
const maxCreateAttempts = 3

// isAmbiguous reports whether err says the device may have been created.
func isAmbiguous(err error) bool {
	var a interface{ Ambiguous() bool }
	return errors.As(err, &a) && a.Ambiguous()
}

// Errors say each thing once: the Cloud's errors name the operation and
// the device it was given (`create device "web-ams1-1" (slot web/ams1/1):
// 422 ...`, `delete device "ID": ...`), FailedDevice carries the change's
// hostname, slot and id, and the executor adds only what it alone knows
// (attempts, which of a replacement's devices). It never wraps a Cloud
// error in the operation and device again.

// createNew makes c's new device (safeCreate) and says how that went:
// done with the device, notStarted when scheduling stopped or Ctrl-C came
// during an ambiguous create's lookup (the next plan lists the slot and
// knows), or failed.
func (r *run) createNew(ctx context.Context, w *wave, c *planner.Change) (planner.Live, outcome, FailedDevice) {
	if c.Desired == nil {
		return planner.Live{}, failed, FailedDevice{LastEvent: string(c.Action) + ": the plan has no desired device"}
	}
	if found, ok, err := r.fence(w.sched, c); err != nil || ok {
		r.leaveBatch(c) // safety.go
		if err != nil {
			return planner.Live{}, notStarted, FailedDevice{}
		}
		return found, done, FailedDevice{}
	}
	live, err := r.safeCreate(ctx, w.sched, c, true)
	switch {
	case errors.Is(err, errNotSent), err != nil && ctx.Err() != nil:
		return live, notStarted, FailedDevice{}
	case err != nil:
		return live, failed, FailedDevice{LastEvent: err.Error()}
	}
	return live, done, FailedDevice{}
}

// doCreate creates a new slot's device and waits until it is ready.
func (r *run) doCreate(ctx context.Context, w *wave, c *planner.Change) (outcome, FailedDevice) {
	live, oc, fd := r.createNew(ctx, w, c)
	if oc != done {
		return oc, fd
	}
	r.emit(changeEvent(ChangeDone, c, live.ID, "created"))
	if c.Desired.NetworkType != "" {
		return r.createdNetwork(ctx, w, c, live.ID) // network.go
	}
	if r.opts.Wait == WaitNone {
		return done, FailedDevice{}
	}
	ready, bad, err := r.ensureReady(ctx, waitFor{c: c, id: live.ID, mode: r.opts.Wait, after: r.w.now(), since: time.Now()})
	switch {
	case err == nil && bad != nil:
		return failed, *bad
	case err == nil:
		if bad := r.configure(ctx, c, ready.ID); bad != nil {
			return failed, *bad
		}
	}
	// Ready, or the wait was interrupted: the create itself is done either
	// way, and the next plan sees the device in whatever state it reaches.
	return done, FailedDevice{}
}

// doDelete deletes a device; a device already gone counts as deleted.
func (r *run) doDelete(w *wave, c *planner.Change) (outcome, FailedDevice) {
	if oc, fd := r.guardDuplicate(w.sched, c); oc != done {
		return oc, fd
	}
	err := r.call(w.sched, func(cctx context.Context) error {
		r.emit(changeEvent(ChangeStarted, c, c.DeviceID(), "delete"))
		return r.cloud.Delete(cctx, c.DeviceID())
	})
	switch {
	case errors.Is(err, errNotSent):
		return notStarted, FailedDevice{}
	case err != nil:
		return failed, FailedDevice{LastEvent: err.Error()}
	}
	r.markKnown(c.DeviceID())
	r.emit(changeEvent(ChangeDone, c, c.DeviceID(), "deleted"))
	return done, FailedDevice{}
}

// doUpdate changes the mutable attributes in one PUT.
func (r *run) doUpdate(w *wave, c *planner.Change) (outcome, FailedDevice) {
	if c.Desired == nil {
		return failed, FailedDevice{LastEvent: "update: the plan has no desired device"}
	}
	d := c.Desired
	tags := d.Tags()
	u := planner.DeviceUpdate{Hostname: &d.Hostname, Tags: &tags, AlwaysPXE: &d.AlwaysPXE}
	err := r.call(w.sched, func(cctx context.Context) error {
		r.emit(changeEvent(ChangeStarted, c, c.DeviceID(), "update"))
		return r.cloud.Update(cctx, c.DeviceID(), u)
	})
	switch {
	case errors.Is(err, errNotSent):
		return notStarted, FailedDevice{}
	case err != nil:
		return failed, FailedDevice{LastEvent: err.Error()}
	}
	// The PUT rewrote lkfleet's tags: an earlier run's marker is gone.
	r.setRewritten(c.DeviceID())
	if oc, fd := r.updateNetwork(w, c); oc != done { // network.go
		return oc, fd
	}
	if fd := r.configure(w.sched, c, c.DeviceID()); fd != nil {
		return failed, *fd
	}
	r.emit(changeEvent(ChangeDone, c, c.DeviceID(), "updated"))
	return done, FailedDevice{}
}

// doReplace creates the slot's new device, waits until it is ready, and
// only then deletes the old one: the slot always has a serving device, and
// the old hardware is released only once the new device is ready. It
// serves replacements and rebuilds by recreate.
func (r *run) doReplace(ctx context.Context, w *wave, c *planner.Change) (outcome, FailedDevice) {
	live, oc, created := r.createNew(ctx, w, c)
	if oc != done {
		return oc, created
	}
	r.emit(changeEvent(Info, c, live.ID, "created new device"))
	// Even with --wait none the new device must be active before the old
	// one goes: deleting first would lose the slot on a failed provision.
	mode := r.opts.Wait
	if mode == WaitNone {
		mode = WaitActive
	}
	newLive, fd, err := r.ensureReady(ctx, waitFor{c: c, id: live.ID, mode: mode, after: r.w.now(), since: time.Now()})
	switch {
	case err != nil:
		// Ctrl-C: the slot has both devices; the next plan keeps the older
		// (not failed) one and deletes the other.
		r.made(c, live.ID)
		return notStarted, FailedDevice{}
	case fd != nil:
		// The old device stays: it still serves the slot.
		return failed, *fd
	}
	if oc, fd := r.convergeNetwork(ctx, w.sched, c, newLive.ID); oc != done { // network.go
		return oc, fd
	}
	if fd := r.configure(ctx, c, newLive.ID); fd != nil {
		// Configured or not, the new device exists; the old one stays
		// until a later apply has configured the new one.
		return failed, *fd
	}
	old := c.DeviceID()
	if old == "" {
		r.emit(changeEvent(ChangeDone, c, newLive.ID, "replaced"))
		return done, FailedDevice{}
	}
	// The old device becomes unavailable from its delete on (the slot is
	// served by the new one by then); the budget bounds those deletes.
	if err := w.budget.Acquire(ctx, 1); err != nil {
		r.made(c, newLive.ID)
		return notStarted, FailedDevice{}
	}
	err = r.call(ctx, func(cctx context.Context) error {
		r.emit(changeEvent(Info, c, old, "delete old device"))
		return r.cloud.Delete(cctx, old)
	})
	w.budget.Release(1)
	switch {
	case errors.Is(err, errNotSent):
		r.made(c, newLive.ID)
		return notStarted, FailedDevice{}
	case err != nil:
		return failed, FailedDevice{ID: old, LastEvent: fmt.Sprintf("new device %s is ready, the old one is not deleted: %v", newLive.ID, err)}
	}
	r.markKnown(old)
	r.emit(changeEvent(ChangeDone, c, newLive.ID, "replaced "+old))
	return done, FailedDevice{}
}

// doInPlace rebuilds a device on its own hardware: one PUT with the new
// userdata (or script URL), the new rev tag and the pending marker naming
// this run (see planner.TagPending), then the reboot or reinstall action,
// then a wait until it has booted again: two mutating requests. The marker
// is settled by the run's record at release (Options.RunID), which names
// the device among the unconfirmed unless its action was accepted. Without
// a run id (no record) the marker is of the old form and a second PUT
// clears it after the action. The device counts against the wave's
// max_unavailable from the PUT until it is ready.
func (r *run) doInPlace(ctx context.Context, w *wave, c *planner.Change, how spec.Strategy) (oc outcome, fd FailedDevice) {
	d := c.Desired
	switch {
	case d == nil:
		w.turns.pass(c)
		return failed, FailedDevice{LastEvent: "rebuild: the plan has no desired device"}
	case how.NeedsAlwaysPXE() && !d.AlwaysPXE:
		// Without always_pxe a reboot boots the local disk, not the image.
		w.turns.pass(c)
		return failed, FailedDevice{LastEvent: fmt.Sprintf("rebuild by %s needs always_pxe: true (or rollout.rebuild: %s)", how, spec.DefaultStrategy(false))}
	}
	err := w.turns.await(w.sched, c)
	if err == nil {
		err = w.budget.Acquire(w.sched, 1)
	}
	w.turns.pass(c)
	if err != nil {
		return notStarted, FailedDevice{}
	}
	defer func() {
		// A failure is recorded, and halts the rollout when it is one too
		// many, before the unit goes back: released first, the unit would
		// let the next device of the wave start before the halt.
		if oc == failed {
			r.fail(w, c, fd)
			oc = reported
		}
		w.budget.Release(1)
	}()

	id := c.DeviceID()
	tags := r.pendingTags(d, c.Live)
	userdata := d.APIUserdata()
	u := planner.DeviceUpdate{Hostname: &d.Hostname, Tags: &tags, AlwaysPXE: &d.AlwaysPXE, Userdata: &userdata}
	if c.Live == nil || c.Live.ScriptURL != d.IPXEScriptURL {
		u.IPXEScriptURL = &d.IPXEScriptURL
	}
	// From before the PUT is sent until its action is accepted the device
	// counts as unconfirmed: a PUT that failed may still have been stored.
	r.setUnconfirmed(id, true)
	err = r.call(w.sched, func(cctx context.Context) error {
		r.emit(changeEvent(ChangeStarted, c, id, string(how)))
		return r.cloud.Update(cctx, id, u)
	})
	switch {
	case errors.Is(err, errNotSent):
		r.setUnconfirmed(id, false)
		return notStarted, FailedDevice{}
	case err != nil:
		return failed, FailedDevice{LastEvent: err.Error()}
	}
	r.setRewritten(id)
	if fd := r.act(ctx, c, id, how); fd != nil {
		return failed, *fd
	}
	after, since := r.w.now(), time.Now()
	r.setUnconfirmed(id, false)
	if r.opts.RunID == "" {
		if fd := r.clearPending(ctx, c, id); fd != nil {
			return failed, *fd
		}
	}
	r.emit(changeEvent(ChangeDone, c, id, string(how)+" sent"))
	if r.opts.Wait == WaitNone {
		return done, FailedDevice{}
	}
	var baseline time.Time
	if c.Live != nil {
		baseline = c.Live.UserStateAt
	}
	_, bad, err := r.ensureReady(ctx, waitFor{c: c, id: id, mode: r.opts.Wait, inPlace: true, baseline: baseline, after: after, since: since})
	switch {
	case err == nil && bad != nil:
		return failed, *bad
	case err == nil:
		if fd := r.configure(ctx, c, id); fd != nil {
			return failed, *fd
		}
	}
	return done, FailedDevice{}
}

// configure applies the desired device's post-provisioning settings when
// the Cloud has any (see Configurer); nil when done or nothing to do.
func (r *run) configure(ctx context.Context, c *planner.Change, id string) *FailedDevice {
	cf, ok := r.cloud.(Configurer)
	if !ok || c.Desired == nil {
		return nil
	}
	d := *c.Desired
	err := r.call(ctx, func(cctx context.Context) error { return cf.Configure(cctx, id, d) })
	switch {
	case errors.Is(err, errNotSent):
		// Stopped before it was sent: the next plan shows what is left.
		r.cutShort(c)
		return nil
	case err != nil:
		return &FailedDevice{ID: id, LastEvent: err.Error()}
	}
	return nil
}

// act sends an in-place rebuild's action after its PUT. The PUT wrote the
// new boot configuration: the action is sent even after Ctrl-C. If it
// fails the device keeps the PUT's pending marker, so the next plan still
// sees the rebuild (and a kill between the two leaves the same marker).
func (r *run) act(ctx context.Context, c *planner.Change, id string, how spec.Strategy) *FailedDevice {
	action := func(cctx context.Context) error { return r.sendAction(cctx, id, how) }
	err := r.call(context.WithoutCancel(ctx), action)
	if isAmbiguous(err) {
		// The action may or may not have happened. Sending it again costs at
		// most one more boot, while not sending it could leave the old image
		// running under the new rev tag.
		r.emit(Event{Kind: Retrying, Wave: c.Wave, Action: c.Action, Slot: c.Slot(), Hostname: c.Hostname(),
			DeviceID: id, Message: string(how) + " may not have been done; sending it again", Err: err})
		err = r.call(context.WithoutCancel(ctx), action)
	}
	if err == nil {
		return nil
	}
	return &FailedDevice{LastEvent: err.Error() + "; the device is marked pending, the next apply rebuilds it"}
}

// sendAction sends the API action of an in-place strategy: one case per
// in-place row of spec's strategy table.
func (r *run) sendAction(ctx context.Context, id string, how spec.Strategy) error {
	switch how {
	case spec.StrategyReboot:
		return r.cloud.Reboot(ctx, id)
	case spec.StrategyReinstall:
		return r.cloud.Reinstall(ctx, id)
	}
	return fmt.Errorf("rebuild strategy %q has no in-place action", how)
}

// safeCreate creates c's device without ever making a second one: after
// an ambiguous failure it looks the slot up (allowing for listing lag) and
// creates again only if the device is truly absent. gate stops the first
// attempt when scheduling stopped (errNotSent); later attempts belong to a
// change already under way.
func (r *run) safeCreate(ctx, gate context.Context, c *planner.Change, announce bool) (planner.Live, error) {
	for attempt := 1; ; attempt++ {
		live, err := r.sendCreate(gate, c, attempt == 1 && announce) // batch.go
		if err == nil {
			return live, nil
		}
		if errors.Is(err, errNotSent) {
			if attempt == 1 {
				return planner.Live{}, err
			}
			return planner.Live{}, ctx.Err()
		}
		if !isAmbiguous(err) {
			return planner.Live{}, err
		}
		if attempt >= maxCreateAttempts {
			return planner.Live{}, fmt.Errorf("%w; outcome still unknown after %d attempts: run apply again, it lists before creating",
				err, attempt)
		}
		r.emit(Event{Kind: Retrying, Wave: c.Wave, Action: c.Action, Slot: c.Slot(), Hostname: c.Hostname(),
			Message: "create may have succeeded; looking the slot up", Err: err})
		found, ok, lerr := r.lookup(ctx, c.Slot(), r.w.now(), time.Now())
		if lerr != nil {
			return planner.Live{}, lerr
		}
		if ok {
			r.emit(changeEvent(Info, c, found.ID, "the ambiguous create made the device; using it"))
			return found, nil
		}
		r.emit(changeEvent(Retrying, c, "", "the slot is empty; creating again"))
		gate = ctx
	}
}

// createOnce sends one create request for c (announced when first).
func (r *run) createOnce(gate context.Context, c *planner.Change, first bool) (planner.Live, error) {
	var live planner.Live
	err := r.call(gate, func(cctx context.Context) error {
		if first {
			r.emit(changeEvent(ChangeStarted, c, "", "create"))
		}
		var err error
		live, err = r.cloud.Create(cctx, *c.Desired)
		return err
	})
	return live, err
}

// lookup finds the new device of slot, if any, in listings that began
// after the failed create (after, at failedAt) and keeps listing until one
// begun ListLag after failedAt still does not show it.
func (r *run) lookup(ctx context.Context, slot string, after uint64, failedAt time.Time) (planner.Live, bool, error) {
	for {
		s, err := r.w.next(ctx, after)
		if err != nil {
			return planner.Live{}, false, err
		}
		after = s.seq
		for _, l := range s.bySlot[slot] {
			if !r.isKnown(l.ID) {
				return l, true, nil
			}
		}
		if s.start.Sub(failedAt) >= r.opts.ListLag {
			return planner.Live{}, false, nil
		}
	}
}
