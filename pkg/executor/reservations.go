package executor

// This file is the executor's part of hardware reservations and spot
// devices: a reservation is released only once the device on it is gone
// (deprovisioning included), so a new device that takes the reservation
// of an old one is created after the old one has left the listings.

import (
	"context"
	"errors"
	"time"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// narrowReservations pins every reserved create to the reservation the
// plan assigned it (Change.Reservation), so the backend asks for exactly
// that one instead of the group's pool or the next available.
func narrowReservations(p planner.Plan) planner.Plan {
	changes := make([]planner.Change, len(p.Changes))
	copy(changes, p.Changes)
	for i := range changes {
		c := &changes[i]
		if c.Reservation == "" || c.Desired == nil {
			continue
		}
		d := *c.Desired
		d.Hardware.Reservation = spec.Reservation{IDs: []string{c.Reservation}}
		c.Desired = &d
	}
	p.Changes = changes
	return p
}

// onReservation reports whether c's new device takes a reservation.
func onReservation(c *planner.Change) bool {
	return c.Desired != nil && c.Desired.Hardware.Reservation.Reserved()
}

// batchable reports whether c's create may share a batch request: a spot
// bid goes in its own request (its numeric spot_price_max, see
// packet/market.go), and a create that first waits for a reservation to
// be freed would hold the other entries of its batch back.
func batchable(c *planner.Change) bool {
	return c.ReservationAfter == "" && !c.Desired.Hardware.Spot()
}

// awaited returns the devices that changes of the wave (indices into p)
// wait for to free their reservations: their deletes run before the
// wave's other changes, or those would wait forever.
func awaited(p planner.Plan, wave []int) map[string]bool {
	out := map[string]bool{}
	for _, i := range wave {
		if c := &p.Changes[i]; c.ReservationAfter != "" && c.ReservationAfter != c.DeviceID() {
			out[c.ReservationAfter] = true
		}
	}
	return out
}

// doReservedReplace replaces a device whose reservation the new device
// takes: delete the old device, wait until it is gone, then create on the
// freed reservation and wait until ready. The slot has no device in
// between, so the whole change counts against max_unavailable. A
// replacement on a reservation that another change's delete frees waits
// for that device instead and then replaces as usual (new, then old out).
func (r *run) doReservedReplace(ctx context.Context, w *wave, c *planner.Change) (outcome, FailedDevice) {
	old := c.ReservationAfter
	if old != c.DeviceID() {
		if err := r.awaitGone(ctx, c, old); err != nil {
			return notStarted, FailedDevice{}
		}
		return r.doReplace(ctx, w, c)
	}
	if err := w.budget.Acquire(ctx, 1); err != nil {
		return notStarted, FailedDevice{}
	}
	defer w.budget.Release(1)
	err := r.call(w.sched, func(cctx context.Context) error {
		r.emit(changeEvent(ChangeStarted, c, old, "delete old device to free reservation "+c.Reservation))
		return r.cloud.Delete(cctx, old)
	})
	switch {
	case errors.Is(err, errNotSent):
		return notStarted, FailedDevice{}
	case err != nil:
		return failed, FailedDevice{ID: old, LastEvent: err.Error()}
	}
	r.markKnown(old)
	if err := r.awaitGone(ctx, c, old); err != nil {
		return notStarted, FailedDevice{}
	}
	oc, fd := r.doCreate(ctx, w, c)
	if oc == done {
		r.emit(changeEvent(Info, c, "", "replaced "+old+" on reservation "+c.Reservation))
	}
	return oc, fd
}

// awaitGone waits until device id has left the fleet listings: only then
// is its reservation provisionable again. It returns ctx's error when
// interrupted.
func (r *run) awaitGone(ctx context.Context, c *planner.Change, id string) error {
	r.emit(changeEvent(Info, c, id, "waiting for the device to finish deprovisioning (its reservation is freed then)"))
	after := r.w.now()
	for {
		s, err := r.w.next(ctx, after)
		if err != nil {
			return err
		}
		after = s.seq
		if _, ok := s.byID[id]; !ok {
			return nil
		}
	}
}

// retryOnReservation is called after a failed device of c was deleted
// for a retry: a reserved slot is created again on the same reservation,
// which is free only once the failed device is gone.
func (r *run) retryOnReservation(ctx context.Context, c *planner.Change, id string) error {
	if !onReservation(c) {
		return nil
	}
	return r.awaitGone(ctx, c, id)
}

// terminating is the failure reason of a spot device the service has
// outbid, "" if it is not: waiting for it would end in its deletion.
func terminating(l planner.Live) string {
	if l.TerminationTime.IsZero() {
		return ""
	}
	return "spot instance outbid: the service terminates it at " + l.TerminationTime.UTC().Format(time.RFC3339)
}

// doFreedCreate creates a device on a reservation that a delete of the
// same plan frees: it waits until that device is gone first (the planner
// only counts on deletes of the same or an earlier wave).
func (r *run) doFreedCreate(ctx context.Context, w *wave, c *planner.Change) (outcome, FailedDevice) {
	if err := r.awaitGone(ctx, c, c.ReservationAfter); err != nil {
		return notStarted, FailedDevice{}
	}
	return r.doCreate(ctx, w, c)
}
