package executor

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// configuringCloud is a Cloud with post-provisioning settings: it records
// each Configure with the state the device had then.
type configuringCloud struct {
	*fakeCloud
	mu   sync.Mutex
	got  []string // "id state hostname"
	fail error
}

func (c *configuringCloud) Configure(ctx context.Context, id string, d spec.Device) error {
	lives, _ := c.fakeCloud.List(ctx)
	state := "missing"
	for _, l := range lives {
		if l.ID == id {
			state = l.State
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, id+" "+state+" "+d.Hostname)
	return c.fail
}

// TestConfigureRunsOnceTheDeviceIsReady checks the Configurer seam: a new
// device is configured once it is active, an updated one after its PUT,
// and a failing Configure fails the change with the Cloud's words.
func TestConfigureRunsOnceTheDeviceIsReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fc := &configuringCloud{fakeCloud: newFake()}
		old := fc.seed(slotName("ewr1", 1), "newrev000000")
		res, err := Apply(t.Context(), fc, mkPlan(rollout(),
			createChange(slotName("ams1", 1)), liveChange(planner.Update, old, "")), Options{Wait: WaitActive})
		if err != nil || res.Created != 1 || res.Updated != 1 {
			t.Fatalf("result %+v, err %v", res, err)
		}
		created := ""
		for _, c := range fc.log() {
			if c.op == "create" {
				created = c.id
			}
		}
		want := []string{created + " active web-ams1-1", old.ID + " active web-ewr1-1"}
		if !slices.Equal(fc.got, want) {
			t.Errorf("configured %q, want %q", fc.got, want)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		fc := &configuringCloud{fakeCloud: newFake(), fail: errors.New(`configure device "x": 422 no such VLAN`)}
		res, _ := Apply(t.Context(), fc, mkPlan(rollout(), createChange(slotName("ams1", 1))), Options{Wait: WaitActive})
		if len(res.Failed) != 1 || res.Failed[0].LastEvent != `configure device "x": 422 no such VLAN` {
			t.Errorf("failed %+v, want the Configure error", res.Failed)
		}
	})
}
