package lease

import (
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// ids are the ids of runs, in order.
func ids(runs []Run) []string {
	var out []string
	for _, r := range runs {
		out = append(out, r.ID)
	}
	return out
}

// The customdata record keeps the finished runs through every write: a
// finished run is recorded at its release (with its unconfirmed devices),
// the next run's acquire and renewals carry it over, unlock's tombstone
// keeps it, and a plain release changes nothing. A later finished run
// keeps only the runs whose markers the fleet still carries.
func TestCustomdataRecordKeepsFinishedRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		ctx := t.Context()
		c := NewCustomdata(st, "web", CustomdataOptions{})
		if err := c.Acquire(ctx, who(1)); err != nil {
			t.Fatal(err)
		}
		if err := c.ReleaseFinished(ctx, Run{ID: "r1", Unconfirmed: []string{"dev-9"}}, nil); err != nil {
			t.Fatal(err)
		}
		_, runs, err := c.State(ctx)
		if err != nil || !slices.Equal(ids(runs), []string{"r1"}) || !slices.Equal(runs[0].Unconfirmed, []string{"dev-9"}) {
			t.Fatalf("after r1: runs %+v, %v", runs, err)
		}
		// The next run: acquire, renew, then killed (never released).
		if err := c.Acquire(ctx, who(2)); err != nil {
			t.Fatal(err)
		}
		if err := c.Renew(ctx); err != nil {
			t.Fatal(err)
		}
		h, runs, err := c.State(ctx)
		if err != nil || h == nil || h.Holder != who(2).Holder || !slices.Equal(ids(runs), []string{"r1"}) {
			t.Fatalf("while held: holder %v, runs %v, %v", h, ids(runs), err)
		}
		// unlock breaks it: the killed run is not recorded, r1 stays.
		if _, err := c.Break(ctx); err != nil {
			t.Fatal(err)
		}
		if h, runs, _ = c.State(ctx); h != nil || !slices.Equal(ids(runs), []string{"r1"}) {
			t.Fatalf("after unlock: holder %v, runs %v; want free with r1 kept", h, ids(runs))
		}
		// A run without rebuilds releases plainly: the record is unchanged.
		c3 := NewCustomdata(st, "web", CustomdataOptions{})
		if err := c3.Acquire(ctx, who(3)); err != nil {
			t.Fatal(err)
		}
		if err := c3.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if _, runs, _ = c3.State(ctx); !slices.Equal(ids(runs), []string{"r1"}) {
			t.Fatalf("after a plain release: runs %v", ids(runs))
		}
		// r4 finishes while no device carries r1's marker any more: r1 goes.
		if err := c3.Acquire(ctx, who(4)); err != nil {
			t.Fatal(err)
		}
		if err := c3.ReleaseFinished(ctx, Run{ID: "r4"}, []string{"r9"}); err != nil {
			t.Fatal(err)
		}
		if _, runs, _ = c3.State(ctx); !slices.Equal(ids(runs), []string{"r4"}) {
			t.Fatalf("after r4 with r1's markers gone: runs %v, want [r4]", ids(runs))
		}
		if err := c3.Acquire(ctx, who(5)); err != nil {
			t.Fatal(err)
		}
		if err := c3.ReleaseFinished(ctx, Run{ID: "r5"}, []string{"r4"}); err != nil {
			t.Fatal(err)
		}
		if _, runs, _ = c3.State(ctx); !slices.Equal(ids(runs), []string{"r4", "r5"}) {
			t.Fatalf("after r5 with r4's markers still out: runs %v, want [r4 r5]", ids(runs))
		}
	})
}

// A run whose lease was taken over records nothing: its markers must stay
// unfinished.
func TestLostLeaseRecordsNoFinishedRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newMemStore()
		ctx := t.Context()
		a := NewCustomdata(st, "web", CustomdataOptions{TTL: 30 * time.Second})
		if err := a.Acquire(ctx, who(1)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute) // a's lease expires unrenewed
		b := NewCustomdata(st, "web", CustomdataOptions{TTL: 30 * time.Second})
		if err := b.Acquire(ctx, who(2)); err != nil {
			t.Fatal(err)
		}
		if err := a.ReleaseFinished(ctx, Run{ID: "a-run"}, nil); err != nil {
			t.Fatal(err)
		}
		h, runs, err := b.State(ctx)
		if err != nil || h == nil || h.Holder != who(2).Holder || len(runs) != 0 {
			t.Fatalf("holder %v, runs %v, %v; want b holding and no finished run", h, ids(runs), err)
		}
	})
}

// The record is bounded: MaxRuns runs at most, the newest kept.
func TestRecordKeepsAtMostMaxRuns(t *testing.T) {
	var runs []Run
	var keep []string
	for i := range MaxRuns + 5 {
		id := fmt.Sprintf("r%d", i)
		runs = nextRuns(runs, Run{ID: id}, keep)
		keep = append(keep, id)
	}
	if len(runs) != MaxRuns || runs[0].ID != "r5" || runs[len(runs)-1].ID != fmt.Sprintf("r%d", MaxRuns+4) {
		t.Errorf("%d runs from %s to %s, want the newest %d", len(runs), runs[0].ID, runs[len(runs)-1].ID, MaxRuns)
	}
}

func TestRunID(t *testing.T) {
	me := Me("apply")
	if id := me.RunID(); len(id) != 12 || id == me.Holder {
		t.Errorf("run id %q of %q, want the 12 random hex digits", id, me.Holder)
	}
}

// The etcd backend keeps the finished runs under PREFIX/FLEET/runs, on no
// etcd lease: they outlive the holder, survive unlock, are read with the
// holder in one transaction, and a run whose mutex was broken records
// nothing.
func TestEtcdRecordsFinishedRuns(t *testing.T) {
	u := startEtcd(t)
	ctx := t.Context()
	ttl := 2 * time.Second
	a := NewEtcd(dial(t, u), u.Prefix, "web", ttl)
	if err := a.Acquire(ctx, who(1)); err != nil {
		t.Fatal(err)
	}
	if err := a.ReleaseFinished(ctx, Run{ID: "r1", Unconfirmed: []string{"dev-9"}}, nil); err != nil {
		t.Fatal(err)
	}
	h, runs, err := a.State(ctx)
	if err != nil || h != nil || !slices.Equal(ids(runs), []string{"r1"}) || !slices.Equal(runs[0].Unconfirmed, []string{"dev-9"}) {
		t.Fatalf("after r1: holder %v, runs %+v, %v", h, runs, err)
	}
	// A run that is broken by unlock (as after a kill) records nothing,
	// and the break leaves r1.
	b := NewEtcd(dial(t, u), u.Prefix, "web", ttl)
	if err := b.Acquire(ctx, who(2)); err != nil {
		t.Fatal(err)
	}
	if h, runs, err = a.State(ctx); err != nil || h == nil || h.Holder != who(2).Holder || !slices.Equal(ids(runs), []string{"r1"}) {
		t.Fatalf("while held: holder %v, runs %v, %v", h, ids(runs), err)
	}
	if _, err := NewEtcd(dial(t, u), u.Prefix, "web", ttl).Break(ctx); err != nil {
		t.Fatal(err)
	}
	_ = b.ReleaseFinished(ctx, Run{ID: "broken"}, []string{"r1"}) // its mutex is gone: writes nothing
	if h, runs, err = a.State(ctx); err != nil || h != nil || !slices.Equal(ids(runs), []string{"r1"}) {
		t.Fatalf("after the break: holder %v, runs %v, %v; want free, only r1", h, ids(runs), err)
	}
	c := NewEtcd(dial(t, u), u.Prefix, "web", ttl)
	if err := c.Acquire(ctx, who(3)); err != nil {
		t.Fatal(err)
	}
	if err := c.ReleaseFinished(ctx, Run{ID: "r3"}, []string{"r1"}); err != nil {
		t.Fatal(err)
	}
	if _, runs, err = a.State(ctx); err != nil || !slices.Equal(ids(runs), []string{"r1", "r3"}) {
		t.Fatalf("after r3: runs %v, %v; want [r1 r3]", ids(runs), err)
	}
}
