package executor

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// refusingCloud refuses one kind of mutation the way pkg/packet does: its
// error already names the operation and the device it was given.
type refusingCloud struct {
	*fakeCloud
	op string
}

func (c refusingCloud) Create(ctx context.Context, d spec.Device) (planner.Live, error) {
	if c.op == "create" {
		return planner.Live{}, fmt.Errorf("create device %q (slot %s): 422 no capacity", d.Hostname, d.Slot)
	}
	return c.fakeCloud.Create(ctx, d)
}

func (c refusingCloud) Update(ctx context.Context, id string, u planner.DeviceUpdate) error {
	if c.op == "update" {
		return fmt.Errorf("update device %q: 422 hostname taken", id)
	}
	return c.fakeCloud.Update(ctx, id, u)
}

func (c refusingCloud) Delete(ctx context.Context, id string) error {
	if c.op == "delete" {
		return fmt.Errorf("delete device %q: 403 forbidden", id)
	}
	return c.fakeCloud.Delete(ctx, id)
}

// TestFailuresSayEachThingOnce checks that the executor passes a Cloud's
// error on as it is: before, a refused create read
// `create device "h" (slot s): create device "h" (slot s): 422 ...`.
func TestFailuresSayEachThingOnce(t *testing.T) {
	slot := slotName("ams1", 1)
	for _, op := range []string{"create", "update", "delete"} {
		t.Run(op, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fc := newFake()
				var c planner.Change
				want := ""
				switch op {
				case "create":
					c = createChange(slot)
					want = `create device "web-ams1-1" (slot web/ams1/1): 422 no capacity`
				case "update":
					old := fc.seed(slot, "newrev000000")
					c = liveChange(planner.Update, old, "")
					want = fmt.Sprintf("update device %q: 422 hostname taken", old.ID)
				case "delete":
					old := fc.seed(slot, "newrev000000")
					c = deleteChange(old)
					want = fmt.Sprintf("delete device %q: 403 forbidden", old.ID)
				}
				res, _ := Apply(t.Context(), refusingCloud{fc, op}, mkPlan(rollout(), c), Options{Wait: WaitNone})
				if len(res.Failed) != 1 || res.Failed[0].LastEvent != want {
					t.Fatalf("failed %+v, want one with %q", res.Failed, want)
				}
				if f := res.Failed[0]; f.Hostname != "web-ams1-1" || f.Slot != slot {
					t.Errorf("failed device %+v does not carry the change's hostname and slot", f)
				}
			})
		})
	}
}
