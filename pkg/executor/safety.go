package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Safety across runs (docs/reliability.md): what one run does so that the
// next one, started a moment after it was interrupted or killed, neither
// duplicates a slot, nor empties one, nor takes an unfinished rebuild for
// a finished one.

// fence looks a slot up before its first create: an earlier run stopped
// a moment ago may have created its device, which the listings still
// hide. It waits for a listing begun ListLag after QuietSince (the same
// listings serve every slot, so the wait is paid once per run) and
// returns a device found in the slot that the plan does not know, which
// the change then adopts instead of creating a second one.
func (r *run) fence(gate context.Context, c *planner.Change) (planner.Live, bool, error) {
	if !r.fenced {
		return planner.Live{}, false, nil
	}
	if time.Since(r.opts.QuietSince) < r.opts.ListLag {
		r.fenceOnce.Do(func() {
			r.emit(Event{Kind: Info, Wave: c.Wave, Message: fmt.Sprintf(
				"waiting out the list lag (%s) before the first create: an earlier run may have created devices the listing does not show yet",
				r.opts.ListLag)})
		})
	}
	found, ok, err := r.lookup(gate, c.Slot(), 0, r.opts.QuietSince)
	if err != nil || !ok {
		return planner.Live{}, false, err
	}
	r.emit(changeEvent(Info, c, found.ID, "an earlier run created this slot's device; using it"))
	return found, true, nil
}

// leaveBatch takes c out of its group's create batch (see batcher) when
// the fence settled its slot without a create (adopted, or stopped): the
// batch must not wait for a create that is never sent.
func (r *run) leaveBatch(c *planner.Change) {
	if b := r.batcherOf(c); b != nil {
		b.settle(c, nil)
	}
}

// errNoServing is awaitServing's answer when the slot has no other device
// that is or may become ready.
var errNoServing = errors.New("no other device of the slot is ready")

// awaitServing waits until the slot of c (the delete of a duplicate) has
// an active device that no change of the plan deletes: the keeper, or the
// device that replaced it. It gives up with errNoServing once listings
// begun neverListed after the wait began show no such device on its way
// up (see goingUp), and with ctx's error.
func (r *run) awaitServing(ctx context.Context, c *planner.Change) (string, error) {
	start, after := time.Now(), r.w.now()
	for {
		s, err := r.w.next(ctx, after)
		if err != nil {
			return "", err
		}
		after = s.seq
		coming := false
		for _, l := range s.bySlot[c.Slot()] {
			switch {
			case r.victims[l.ID]:
			case l.State == planner.StateActive:
				return l.ID, nil
			case goingUp(l.State):
				coming = true
			}
		}
		if !coming && s.start.Sub(start) >= r.neverListed() {
			return "", errNoServing
		}
	}
}

// goingUp reports whether a device in state becomes active by itself. A
// failed or powered-off keeper does not: waiting for it would never end.
func goingUp(state string) bool {
	switch state {
	case planner.StateQueued, planner.StateProvisioning, "reinstalling", "powering_on":
		return true
	}
	return false
}

// guardDuplicate holds the delete of a duplicate that is not failed until
// its slot has another ready device (see awaitServing); done when the
// delete may go ahead.
func (r *run) guardDuplicate(ctx context.Context, c *planner.Change) (outcome, FailedDevice) {
	if c.Keeper == "" || c.Live == nil || c.Live.State == planner.StateFailed {
		return done, FailedDevice{}
	}
	id, err := r.awaitServing(ctx, c)
	switch {
	case errors.Is(err, errNoServing):
		return failed, FailedDevice{LastEvent: fmt.Sprintf("duplicate not deleted: its slot has no other ready device "+
			"(keeper %s is gone or failed), and deleting it would leave the slot without one", c.Keeper)}
	case err != nil:
		return notStarted, FailedDevice{}
	}
	if id != c.Keeper {
		r.emit(changeEvent(Info, c, c.DeviceID(), "the slot is served by "+id))
	}
	return done, FailedDevice{}
}

// pendingTags are the tags of an in-place rebuild's PUT (see
// planner.TagPending). With a run id: d's own, the new rev tag included,
// plus the marker naming this run and the rev the device may still run
// (planner.Live.BootedRev: for a device whose earlier rebuild is itself
// unfinished, that rebuild's old rev). Without one: d's own, except that
// the rev tag keeps the device's rev and the marker names the new one;
// clearPending then writes d's tags once the action was accepted.
func (r *run) pendingTags(d *spec.Device, old *planner.Live) []string {
	from := ""
	if old != nil {
		from = old.BootedRev(r.opts.Runs)
	}
	if r.opts.RunID != "" {
		return append(d.Tags(), planner.TagPending+planner.PendingValue(r.opts.RunID, from))
	}
	tags := slices.DeleteFunc(d.Tags(), func(t string) bool { return strings.HasPrefix(t, spec.TagRev) })
	if from != "" {
		tags = append(tags, spec.TagRev+from)
	}
	return append(tags, planner.TagPending+d.Rev)
}

// setRewritten records that device id's PUT of lkfleet's tags was
// accepted (see Result.Rewritten); without a run id it does nothing.
func (r *run) setRewritten(id string) {
	if r.opts.RunID == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rewritten == nil {
		r.rewritten = map[string]bool{}
	}
	r.rewritten[id] = true
}

// setUnconfirmed adds device id to the run's unconfirmed rebuilds (on) or
// takes it out (see Result.Unconfirmed); without a run id it does nothing.
func (r *run) setUnconfirmed(id string, on bool) {
	if r.opts.RunID == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unconfirmed == nil {
		r.unconfirmed = map[string]bool{}
	}
	if on {
		r.unconfirmed[id] = true
	} else {
		delete(r.unconfirmed, id)
	}
}

// clearPending replaces the pending marker by the new rev tag after the
// reboot or reinstall was accepted. Like the action it is sent even after
// Ctrl-C. If it fails the device keeps the marker and the next apply
// reboots it once more, which the failure says.
func (r *run) clearPending(ctx context.Context, c *planner.Change, id string) *FailedDevice {
	tags := c.Desired.Tags()
	err := r.call(context.WithoutCancel(ctx), func(cctx context.Context) error {
		return r.cloud.Update(cctx, id, planner.DeviceUpdate{Tags: &tags})
	})
	if err == nil {
		return nil
	}
	return &FailedDevice{LastEvent: fmt.Sprintf("rebuilt, but writing the new rev tag failed (%v): "+
		"the device keeps its pending marker and the next apply rebuilds it again", err)}
}
