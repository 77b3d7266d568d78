package executor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lkfleet/lkfleet/pkg/network"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// NetworkCloud is what converging a device's network type needs beyond
// Cloud. pkg/packet implements it; a Cloud without it cannot change ports,
// and a change that needs to fails with a message saying so.
type NetworkCloud interface {
	// DeviceNetwork reads a device's ports and its metro (one GET).
	DeviceNetwork(ctx context.Context, id string) (network.State, string, error)
	// PortStep makes one port call.
	PortStep(ctx context.Context, st network.Step) error
	// VirtualNetworks lists the project's VLANs.
	VirtualNetworks(ctx context.Context) ([]planner.VirtualNetwork, error)
	// CreateVirtualNetwork creates a VLAN in a metro, tagged as the fleet's.
	CreateVirtualNetwork(ctx context.Context, metro string, v spec.VLAN) (planner.VirtualNetwork, error)
}

// maxNetworkSteps bounds the port calls of one device: the longest
// conversion of a two-port device takes 14, four ports with a few VLANs
// fewer than 40. Past it something else is changing the ports.
const maxNetworkSteps = 64

// maxIndeterminate bounds port calls in a row whose outcome is unknown
// (5xx, lost answers): each is followed by a fresh read, never a resend.
const maxIndeterminate = 3

// vlanCache is the project's VLANs, listed once per run and grown by the
// VLANs the run creates, so devices of one metro share them.
type vlanCache struct {
	mu     sync.Mutex
	listed bool
	vnets  []planner.VirtualNetwork
}

// resolveVLANs returns the ids of a device's VLANs in its metro, creating
// the missing ones (one mutating call each, under the parallelism limit).
func (r *run) resolveVLANs(ctx, gate context.Context, nc NetworkCloud, c *planner.Change, metro string, want []spec.VLAN) ([]string, error) {
	if len(want) == 0 {
		return nil, nil
	}
	vc := &r.vlans
	vc.mu.Lock()
	defer vc.mu.Unlock()
	if !vc.listed {
		vs, err := nc.VirtualNetworks(ctx)
		if err != nil {
			return nil, err
		}
		vc.vnets, vc.listed = vs, true
	}
	var ids []string
	for _, v := range want {
		if n, ok := planner.ResolveVLAN(vc.vnets, metro, v); ok {
			ids = append(ids, n.ID)
			continue
		}
		var created planner.VirtualNetwork
		err := r.call(gate, func(cctx context.Context) error {
			r.emit(changeEvent(Info, c, c.DeviceID(), fmt.Sprintf("create VLAN %s in metro %s", v, metro)))
			var err error
			created, err = nc.CreateVirtualNetwork(cctx, metro, v)
			return err
		})
		if err != nil {
			// A lost answer may have created it: list again next time.
			vc.listed = false
			return nil, err
		}
		vc.vnets = append(vc.vnets, created)
		ids = append(ids, created.ID)
	}
	return ids, nil
}

// convergeNetwork brings a device's ports to the change's network type,
// one port call at a time, each computed from the ports read just before
// (network.Next), so it is idempotent and finishes what an interrupted
// run began. Port calls share the run's parallelism limit and the
// client's rate limiter; updates of serving devices also take the wave's
// max_unavailable (see updateNetwork).
func (r *run) convergeNetwork(ctx, gate context.Context, c *planner.Change, id string) (outcome, FailedDevice) {
	d := c.Desired
	if d == nil || d.NetworkType == "" {
		return done, FailedDevice{}
	}
	fail := func(format string, args ...any) (outcome, FailedDevice) {
		return failed, FailedDevice{ID: id, LastEvent: fmt.Sprintf("network_type %s: ", d.NetworkType) + fmt.Sprintf(format, args...)}
	}
	t, ok := network.Parse(d.NetworkType)
	if !ok {
		return fail("unknown network type")
	}
	nc, ok := r.cloud.(NetworkCloud)
	if !ok {
		return fail("this API client cannot change ports")
	}
	var ids []string
	resolved, unknown := false, 0
	for range maxNetworkSteps {
		if gate.Err() != nil {
			return notStarted, FailedDevice{}
		}
		st, metro, err := nc.DeviceNetwork(ctx, id)
		if err != nil {
			return fail("%v", err)
		}
		if !resolved {
			if ids, err = r.resolveVLANs(ctx, gate, nc, c, metro, d.VLANs); err != nil {
				if errors.Is(err, errNotSent) {
					return notStarted, FailedDevice{}
				}
				return fail("%v", err)
			}
			resolved = true
		}
		step, more, err := network.Next(st, t, ids)
		if err != nil {
			return fail("%v", err)
		}
		if !more {
			return done, FailedDevice{}
		}
		err = r.call(gate, func(cctx context.Context) error {
			r.emit(changeEvent(Info, c, id, "port: "+step.String()))
			return nc.PortStep(cctx, step)
		})
		switch {
		case errors.Is(err, errNotSent):
			return notStarted, FailedDevice{}
		case err != nil && isAmbiguous(err) && unknown < maxIndeterminate:
			unknown++ // read again: the call may have acted
		case err != nil:
			return fail("%v", err)
		default:
			unknown = 0
		}
	}
	return fail("ports still differ after %d port calls", maxNetworkSteps)
}

// createdNetwork finishes a create whose group has a network type: the
// device counts as ready only once it is active and its network has
// converged (and, with --wait booted, it has booted), even with --wait
// none, so that the guest's first boot already sees its network type in
// the metadata. Configure (see Configurer) follows, as for any create.
func (r *run) createdNetwork(ctx context.Context, w *wave, c *planner.Change, id string) (outcome, FailedDevice) {
	live, fd, err := r.ensureReady(ctx, waitFor{c: c, id: id, mode: WaitActive, after: r.w.now(), since: time.Now()})
	switch {
	case err != nil:
		return done, FailedDevice{} // interrupted: the next apply converges the ports
	case fd != nil:
		return failed, *fd
	}
	id = live.ID // a device that failed to provision was created again
	if oc, fd := r.convergeNetwork(ctx, w.sched, c, id); oc != done {
		if oc == notStarted {
			r.cutShort(c)
			return done, FailedDevice{} // the create is done; the next plan shows the ports
		}
		return oc, fd
	}
	r.emit(changeEvent(Info, c, id, "network "+c.Desired.NetworkType+" converged"))
	if r.opts.Wait == WaitBooted {
		_, fd, err := r.ensureReady(ctx, waitFor{c: c, id: id, mode: WaitBooted, after: r.w.now()})
		switch {
		case err != nil:
			return done, FailedDevice{} // interrupted: the create itself is done
		case fd != nil:
			return failed, *fd
		}
	}
	if fd := r.configure(ctx, c, id); fd != nil {
		return failed, *fd
	}
	return done, FailedDevice{}
}

// updateNetwork converges the ports of an update whose differences include
// the network, after its PUT; done when they do not. A serving device
// whose ports change may lose its bond or its addresses for a while, so
// the conversion takes one unit of the wave's max_unavailable.
func (r *run) updateNetwork(w *wave, c *planner.Change) (outcome, FailedDevice) {
	if n, _ := planner.NetworkAttrs(c); !n {
		return done, FailedDevice{}
	}
	if err := w.budget.Acquire(w.sched, 1); err != nil {
		return notStarted, FailedDevice{}
	}
	defer w.budget.Release(1)
	oc, fd := r.convergeNetwork(w.sched, w.sched, c, c.DeviceID())
	if oc == done {
		r.emit(changeEvent(Info, c, c.DeviceID(), "network "+c.Desired.NetworkType+" converged"))
	}
	return oc, fd
}
