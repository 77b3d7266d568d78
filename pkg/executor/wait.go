package executor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// waitFor is one wait for a device to be ready (see waitReady).
type waitFor struct {
	c    *planner.Change
	id   string // the device waited for
	mode WaitMode
	// inPlace: the device was active before its rebuild, so active alone
	// does not say it rebooted.
	inPlace bool
	// baseline: user states from before it do not count.
	baseline time.Time
	// after: only listings begun after this watcher sequence count.
	after uint64
	// since is when the device was created (or its action accepted): a
	// device no listing begun neverListed after it has shown is missing.
	since time.Time
}

// neverListed is how long after its create a device may be absent from
// every listing before it counts as missing: the list lag plus a margin
// of half the lag or one poll interval, whichever is longer (a listing
// begun exactly at the lag could still just miss it).
func (r *run) neverListed() time.Duration {
	return r.opts.ListLag + max(r.opts.ListLag/2, r.opts.PollInterval)
}

// ensureReady waits until the device is ready (see waitReady). A device
// that fails is deleted and created again up to FailedRetries times. It
// returns the ready device, or the failure, or ctx's error when the wait
// was interrupted.
func (r *run) ensureReady(ctx context.Context, wf waitFor) (planner.Live, *FailedDevice, error) {
	c := wf.c
	for try := 0; ; try++ {
		id := wf.id
		live, reason, err := r.waitReady(ctx, wf)
		if err != nil {
			r.cutShort(c)
			return planner.Live{}, nil, err
		}
		if reason == "" {
			r.emit(Event{Kind: DeviceReady, Wave: c.Wave, Action: c.Action, Slot: c.Slot(), Hostname: c.Hostname(),
				DeviceID: id, State: live.State})
			return live, nil, nil
		}
		r.emit(Event{Kind: DeviceFailed, Wave: c.Wave, Action: c.Action, Slot: c.Slot(), Hostname: c.Hostname(),
			DeviceID: id, State: live.State, Message: reason})
		r.markKnown(id)
		if try >= r.opts.FailedRetries || ctx.Err() != nil {
			return live, &FailedDevice{ID: id, LastEvent: reason}, nil
		}
		r.emit(changeEvent(Retrying, c, id, "deleting the failed device and creating it again"))
		err = r.call(ctx, func(cctx context.Context) error { return r.cloud.Delete(cctx, id) })
		if err != nil {
			if errors.Is(err, errNotSent) {
				return live, &FailedDevice{ID: id, LastEvent: reason}, nil
			}
			return live, &FailedDevice{ID: id, LastEvent: fmt.Sprintf("%s; deleting it for a retry failed: %v", reason, err)}, nil
		}
		if err := r.retryOnReservation(ctx, c, id); err != nil { // reservations.go
			r.cutShort(c)
			return planner.Live{}, nil, err
		}
		created, err := r.safeCreate(ctx, ctx, c, false)
		if err != nil {
			if ctx.Err() != nil {
				r.cutShort(c)
				return planner.Live{}, nil, ctx.Err()
			}
			return live, &FailedDevice{ID: id, LastEvent: fmt.Sprintf("%s; creating it again failed: %v", reason, err)}, nil
		}
		r.emit(changeEvent(Info, c, created.ID, "created again"))
		wf = waitFor{c: c, id: created.ID, mode: wf.mode, after: r.w.now(), since: time.Now()}
	}
}

// missingLimit is how many listings in a row may omit a device that was
// listed before until it counts as failed (it was deleted behind our back).
const missingLimit = 5

// waitReady watches the fleet listings begun after `after` until device id
// is ready (reason "") or has failed (reason = the last event). Ready:
//   - WaitActive: state active; for a device rebuilt in place (already
//     active before its reboot) only once it has left active or posted a
//     user state newer than baseline since.
//   - WaitBooted: a user state "succeeded" newer than baseline.
//
// Failed: state failed, or in WaitBooted a newer user state "failed".
func (r *run) waitReady(ctx context.Context, wf waitFor) (planner.Live, string, error) {
	defer r.w.waiting()() // lets the watcher learn how long devices take
	c, id, mode, inPlace, baseline, after := wf.c, wf.id, wf.mode, wf.inPlace, wf.baseline, wf.after
	var (
		last     planner.Live
		seen     bool
		sawDown  bool
		missing  int
		lastSeen string
	)
	for {
		s, err := r.w.next(ctx, after)
		if err != nil {
			return last, "", err
		}
		after = s.seq
		l, ok := s.byID[id]
		if !ok {
			// New devices may be missing from listings for a while (lag),
			// but not for longer: one that vanished before it was first
			// listed would otherwise be waited for forever.
			if seen {
				if missing++; missing >= missingLimit {
					return last, "device disappeared from the listing", nil
				}
			} else if !wf.since.IsZero() && s.start.Sub(wf.since) >= r.neverListed() {
				return last, fmt.Sprintf("device was never listed within %s of its create (list lag %s)",
					r.neverListed(), r.opts.ListLag), nil
			}
			continue
		}
		seen, missing, last = true, 0, l
		if key := l.State + "/" + l.UserState + "/" + l.UserStateAt.String(); key != lastSeen {
			lastSeen = key
			msg := ""
			switch {
			case l.UserState == "":
			case l.UserStateAt.After(baseline):
				msg = "user state " + l.UserState
			default:
				msg = "user state " + l.UserState + " (from before this change)"
			}
			r.emit(Event{Kind: DeviceState, Wave: c.Wave, Action: c.Action, Slot: c.Slot(), Hostname: c.Hostname(),
				DeviceID: id, State: l.State, Message: msg})
		}
		fresh := l.UserState != "" && l.UserStateAt.After(baseline)
		switch {
		case l.State == "failed":
			// The device's newest event says why (a provisioning step
			// or the guest's own failed user state).
			reason := "state failed"
			if why := cmp.Or(l.LastEvent, l.UserStateBody); why != "" {
				reason += ": " + why
			}
			return l, reason, nil
		case planner.Ignored(l.State):
			return l, "device is being deleted (state " + l.State + ")", nil
		case terminating(l) != "": // reservations.go
			return l, terminating(l), nil
		case mode == WaitBooted && fresh && l.UserState == "failed":
			reason := "boot failed"
			if l.UserStateBody != "" {
				reason += ": " + l.UserStateBody
			}
			return l, reason, nil
		case mode == WaitBooted:
			if fresh && l.UserState == "succeeded" {
				return l, "", nil
			}
		case l.State != "active":
			sawDown = true
		case !inPlace || sawDown || fresh:
			return l, "", nil
		}
	}
}
