package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/lkfleet/lkfleet/pkg/network"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// netFake adds ports to fakeCloud, with the service's rules from
// network.Apply. failAt makes the n-th port call (1-based) fail with an
// ambiguous error after acting.
type netFake struct {
	*fakeCloud
	nmu     sync.Mutex
	ports   map[string]network.State
	vnets   []planner.VirtualNetwork
	steps   []string
	reads   int
	failAt  map[int]bool
	creates int
	onStep  func(n int) // called after each port call, without the lock
}

func newNetFake() *netFake {
	return &netFake{fakeCloud: newFake(), ports: map[string]network.State{}, failAt: map[int]bool{}}
}

func (f *netFake) DeviceNetwork(_ context.Context, id string) (network.State, string, error) {
	f.nmu.Lock()
	defer f.nmu.Unlock()
	f.reads++
	s, ok := f.ports[id]
	if !ok {
		s = network.NewState("c3.small.x86", 2)
		for i := range s.Ports {
			s.Ports[i].ID = id + ":" + s.Ports[i].Name
		}
		f.ports[id] = s
	}
	return s, "am", nil
}

func (f *netFake) PortStep(_ context.Context, st network.Step) error {
	f.nmu.Lock()
	defer f.nmu.Unlock()
	id := st.PortID[:strings.IndexByte(st.PortID, ':')]
	s, err := network.Apply(f.ports[id], st)
	if err != nil {
		return fmt.Errorf("422 %v", err)
	}
	f.ports[id] = s
	f.steps = append(f.steps, st.String())
	n := len(f.steps)
	if f.onStep != nil {
		f.nmu.Unlock()
		f.onStep(n)
		f.nmu.Lock()
	}
	if f.failAt[n] {
		return &ambiguousErr{"502 after acting"}
	}
	return nil
}

func (f *netFake) VirtualNetworks(context.Context) ([]planner.VirtualNetwork, error) {
	f.nmu.Lock()
	defer f.nmu.Unlock()
	return append([]planner.VirtualNetwork(nil), f.vnets...), nil
}

func (f *netFake) CreateVirtualNetwork(_ context.Context, metro string, v spec.VLAN) (planner.VirtualNetwork, error) {
	f.nmu.Lock()
	defer f.nmu.Unlock()
	f.creates++
	n := planner.VirtualNetwork{ID: fmt.Sprintf("vn-%d", v.VXLAN), VXLAN: v.VXLAN, Metro: metro}
	f.vnets = append(f.vnets, n)
	return n, nil
}

func (f *netFake) typeOf(id string) network.Type {
	f.nmu.Lock()
	defer f.nmu.Unlock()
	return network.Derive(f.ports[id])
}

// A created device counts as ready once active and converged; its VLAN is
// created once; a port call that failed after acting is followed by a
// fresh read, not a resend.
func TestCreateConvergesNetwork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newNetFake()
		fc.failAt[1] = true
		c1, c2 := createChange(slotName("ams1", 1)), createChange(slotName("ams1", 2))
		for _, c := range []*planner.Change{&c1, &c2} {
			c.Desired.NetworkType, c.Desired.VLANs = "hybrid", []spec.VLAN{{VXLAN: 1001}}
		}
		var ev events
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), c1, c2), Options{OnEvent: ev.add})
		if err != nil || res.Created != 2 {
			t.Fatalf("apply: %v, %+v", err, res)
		}
		for id := range fc.ports {
			if got := fc.typeOf(id); got != network.Hybrid {
				t.Errorf("%s: %s, want hybrid", id, got)
			}
		}
		if len(fc.ports) != 2 || fc.creates != 1 || len(fc.steps) != 4 {
			t.Errorf("%d devices converged, %d VLAN creates, steps %v", len(fc.ports), fc.creates, fc.steps)
		}
		ready, ok1 := ev.first(DeviceReady, c1.Slot())
		conv, ok2 := ev.first(Info, c1.Slot())
		if !ok1 || !ok2 {
			t.Fatalf("events: %+v", ev.all)
		}
		if ready.Time.After(conv.Time) {
			t.Errorf("ports changed before the device was active")
		}
	})
}

// An update whose only differences are the network converges the ports
// from wherever they are; a frozen network fails the change clearly.
func TestUpdateConvergesNetwork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newNetFake()
		l := fc.seed(slotName("ams1", 1), "newrev000000")
		// Interrupted earlier: eth1 already out of the bond.
		s, _, _ := fc.DeviceNetwork(t.Context(), l.ID)
		s, _ = network.Apply(s, network.Step{Op: network.OpDisbond, PortID: l.ID + ":eth1"})
		fc.ports[l.ID] = s
		fc.vnets = []planner.VirtualNetwork{{ID: "vn-1001", VXLAN: 1001, Metro: "am"}}
		c := liveChange(planner.Update, l, "")
		c.Desired.NetworkType, c.Desired.VLANs = "hybrid", []spec.VLAN{{VXLAN: 1001}}
		c.Attrs = []planner.AttrDiff{{Name: "vlans", Before: "[]", After: "[1001]"}}
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), c), Options{})
		if err != nil || res.Updated != 1 {
			t.Fatalf("apply: %v %+v", err, res)
		}
		if strings.Join(fc.steps, "; ") != "assign vn-1001 to eth1" || fc.creates != 0 {
			t.Errorf("steps %v, creates %d", fc.steps, fc.creates)
		}

		frozen := fc.ports[l.ID]
		frozen.Frozen = true
		fc.ports[l.ID] = frozen
		c.Desired.NetworkType, c.Desired.VLANs = "layer2-bonded", nil
		res, err = Apply(t.Context(), fc, mkPlan(rollout(), c), Options{})
		if err == nil || len(res.Failed) != 1 || !strings.Contains(res.Failed[0].LastEvent, "network_frozen") {
			t.Fatalf("frozen: %v %+v", err, res)
		}
		if errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	})
}

// Network updates of serving devices respect max_unavailable.
func TestNetworkUpdatesRespectMaxUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newNetFake()
		fc.callDelay = 0
		var changes []planner.Change
		for i := 1; i <= 4; i++ {
			l := fc.seed(slotName("ams1", i), "newrev000000")
			c := liveChange(planner.Update, l, "")
			c.Desired.NetworkType = "layer2-individual"
			c.Attrs = []planner.AttrDiff{{Name: "network_type", Before: "layer3", After: "layer2-individual"}}
			changes = append(changes, c)
		}
		var mu sync.Mutex
		inConv, peak := map[string]bool{}, 0
		var ev events
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), changes...), Options{OnEvent: func(e Event) {
			ev.add(e)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case e.Kind == Info && strings.HasPrefix(e.Message, "port: "):
				inConv[e.Slot] = true
			case e.Kind == ChangeDone:
				delete(inConv, e.Slot)
			}
			peak = max(peak, len(inConv))
		}})
		if err != nil || res.Updated != 4 {
			t.Fatalf("apply: %v %+v", err, res)
		}
		if peak != 1 {
			t.Errorf("%d devices converted at once, max_unavailable is 1", peak)
		}
		for id := range fc.ports {
			if got := fc.typeOf(id); got != network.Layer2Individual {
				t.Errorf("%s: %s", id, got)
			}
		}
	})
}

// Ctrl-C in the middle of a conversion stops before the next port call;
// the next apply (from a fresh plan: the same update) finishes it.
func TestInterruptedConversionResumes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := newNetFake()
		l := fc.seed(slotName("ams1", 1), "newrev000000")
		c := liveChange(planner.Update, l, "")
		c.Desired.NetworkType, c.Desired.VLANs = "layer2-individual", []spec.VLAN{{VXLAN: 1001}}
		c.Attrs = []planner.AttrDiff{{Name: "network_type", Before: "layer3", After: "layer2-individual"}}
		ctx, cancel := context.WithCancel(t.Context())
		fc.onStep = func(n int) {
			if n == 2 {
				cancel()
			}
		}
		res, _ := Apply(ctx, fc, mkPlan(rollout(), c), Options{})
		if res.Updated != 0 || len(fc.steps) != 2 {
			t.Fatalf("interrupted run: %+v, steps %v", res, fc.steps)
		}
		fc.onStep = nil
		res, err := Apply(t.Context(), fc, mkPlan(rollout(), c), Options{})
		if err != nil || res.Updated != 1 {
			t.Fatalf("second apply: %v %+v", err, res)
		}
		want := "convert/layer-2 bond0; disbond eth0; disbond eth1; assign vn-1001 to eth0; assign vn-1001 to eth1"
		if got := strings.Join(fc.steps, "; "); got != want {
			t.Errorf("steps over both runs:\n got %s\nwant %s", got, want)
		}
		if got := fc.typeOf(l.ID); got != network.Layer2Individual {
			t.Errorf("type %s", got)
		}
	})
}
