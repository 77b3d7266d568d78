package packet

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

const batchRoute = "POST /projects/{id}/devices/batch"

// batchDevices are n devices of one group, each its own slot, hostname,
// userdata and tags; every third in a metro rather than a facility.
func batchDevices(n int) []spec.Device {
	ds := make([]spec.Device, n)
	for i := range ds {
		d := testDevice()
		d.Index, d.Machine = i+1, "baremetal_0"
		if i%3 == 2 {
			d.Zone = "am"
		}
		d.Slot, d.Hostname = spec.SlotName("web", d.Zone, i+1), fmt.Sprintf("web-%s-%d", d.Zone, i+1)
		d.Userdata, d.UserTags = fmt.Sprintf("#cloud-config\n# device %d\n", i+1), []string{fmt.Sprintf("n%d", i+1)}
		ds[i] = d
	}
	return ds
}

// TestSimCreateBatch: one request creates every entry as its own slot;
// the request and the answer match the API description, and each
// returned id is the slot's listed device with its own hostname,
// userdata and tags.
func TestSimCreateBatch(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{}, true, nil)
	ds := batchDevices(5)
	lives, errs := c.CreateBatch(context.Background(), ds)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	listed, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bySlot := map[string]int{}
	for _, l := range listed {
		bySlot[l.Slot()]++
	}
	for i, d := range ds {
		got, ok := findID(listed, lives[i].ID)
		switch {
		case !ok:
			t.Errorf("entry %d: id %q is not listed", i, lives[i].ID)
		case got.Slot() != d.Slot || got.Hostname != d.Hostname || got.Userdata != d.APIUserdata() || !strings.Contains(strings.Join(got.Tags, ","), d.UserTags[0]):
			t.Errorf("entry %d: listed %+v, want slot %s hostname %s", i, got, d.Slot, d.Hostname)
		case bySlot[d.Slot] != 1:
			t.Errorf("slot %s has %d devices", d.Slot, bySlot[d.Slot])
		}
	}
	if st := srv.Sim.Stats(); st.Requests[batchRoute] != 1 || st.Creates != 5 {
		t.Errorf("simulator saw %d batch requests and %d creates, want 1 and 5", st.Requests[batchRoute], st.Creates)
	}
}

// TestSimCreateBatchRefused: one bad entry makes the service refuse the
// whole batch (422): no device exists, and every entry's error is definite
// (not ambiguous), so the caller may create the slots one by one.
func TestSimCreateBatchRefused(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{}, true, nil)
	ds := batchDevices(3)
	ds[1].Machine = "no.such.plan"
	_, errs := c.CreateBatch(context.Background(), ds)
	for i, err := range errs {
		if err == nil || isAmbiguousErr(err) || !strings.Contains(err.Error(), "422") {
			t.Errorf("entry %d: error %v, want a definite 422", i, err)
		}
	}
	if st := srv.Sim.Stats(); st.Creates != 0 {
		t.Errorf("a refused batch created %d devices", st.Creates)
	}
}

// TestSimCreateBatchAmbiguous: an answer lost after the batch took effect
// makes every entry ambiguous; the devices do exist (the lookup finds them).
func TestSimCreateBatchAmbiguous(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{AmbiguousCreateRate: 1, Seed: 3}, false, nil)
	ds := batchDevices(4)
	_, errs := c.CreateBatch(context.Background(), ds)
	for i, err := range errs {
		if !isAmbiguousErr(err) || !strings.Contains(err.Error(), "may have been created") {
			t.Errorf("entry %d: error %v, want ambiguous", i, err)
		}
	}
	if st := srv.Sim.Stats(); st.Creates != 4 || st.Requests[batchRoute] != 1 {
		t.Errorf("simulator saw %d batch requests and %d creates, want 1 and 4 (never re-sent)", st.Requests[batchRoute], st.Creates)
	}
}

// TestCreateBatchTooLarge: more than MaxBatch entries are refused before
// any request, definitely.
func TestCreateBatchTooLarge(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{}, false, nil)
	_, errs := c.CreateBatch(context.Background(), batchDevices(MaxBatch+1))
	if errs[0] == nil || isAmbiguousErr(errs[0]) || errs[MaxBatch] == nil {
		t.Errorf("error %v, want a definite refusal for every entry", errs[0])
	}
	if n := srv.Sim.Stats().Requests[batchRoute]; n != 0 {
		t.Errorf("%d batch requests sent", n)
	}
}

func isAmbiguousErr(err error) bool {
	a, ok := err.(interface{ Ambiguous() bool })
	return ok && a.Ambiguous()
}

func findID(lives []planner.Live, id string) (planner.Live, bool) {
	for _, l := range lives {
		if l.ID == id {
			return l, true
		}
	}
	return planner.Live{}, false
}

// TestSimCreateBatchThrottled: batches refused with 429 (the server did
// not act) are re-sent through the shared limiter; every device is made
// exactly once.
func TestSimCreateBatchThrottled(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{RateLimit: 200, Burst: 1}, false, nil)
	ds := batchDevices(12)
	var wg sync.WaitGroup
	for part := range 4 {
		wg.Go(func() {
			part := ds[part*3 : part*3+3]
			_, errs := c.CreateBatch(context.Background(), part)
			for i, err := range errs {
				if err != nil {
					t.Errorf("%s: %v", part[i].Slot, err)
				}
			}
		})
	}
	wg.Wait()
	st := srv.Sim.Stats()
	if st.Creates != 12 || st.Duplicates != 0 {
		t.Errorf("simulator made %d devices (%d duplicates), want 12 and 0", st.Creates, st.Duplicates)
	}
	if st.Throttled == 0 {
		t.Log("the pacer kept every batch under the limit: no 429 to re-send")
	}
	if st.Requests[batchRoute] != 4+st.Throttled {
		t.Errorf("%d batch requests for 4 batches with %d refused by 429: want each 429 re-sent once and nothing else", st.Requests[batchRoute], st.Throttled)
	}
}
