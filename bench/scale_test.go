package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestScale runs the real binary against simulators with small fleets and
// counts what the benchmark counts at scale: requests, 429s, listings
// while waiting, device GETs, duplicates. No timing is asserted (the
// machine may be loaded); the counts keep the listing cost and the pacing
// from regressing.
func TestScale(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "lkfleet")
	build := exec.Command("go", "build", "-o", bin, "../cmd/lkfleet")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build lkfleet: %v\n%s", err, out)
	}
	o := opts{bin: bin, tmp: tmp, images: filepath.Join(tmp, "images")}
	if err := os.MkdirAll(o.images, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeImages(o.images); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		n    int
		lim  limits
		// max429 allows for what learning an untold limit may cost.
		max429 int
	}{
		{"told nothing, R=100 B=20", 150, limits{R: 100, B: 20, T: 500 * time.Millisecond}, 1},
		{"small bucket, R=40 B=2", 60, limits{R: 40, B: 2, T: 500 * time.Millisecond}, 3},
		// A bucket of one shows nothing before its 429: one while the
		// pace doubles, one while it steps down to R (pkg/packet
		// pacer_single.go), and on a loaded machine a millisecond of
		// jitter at 25 ms gaps may draw one or two more, each of which
		// doubles the margin.
		{"bucket of one, R=40 B=1", 60, limits{R: 40, B: 1, T: 500 * time.Millisecond}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			a, err := benchApplyWith(ctx, o, tc.n, tc.lim)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d creates: %d requests, %d 429s, %d wait listings, by route %v", tc.n, a.Requests, a.Throttled, a.Wait.WaitListings, a.ByRoute)
			if a.Created != tc.n || a.Duplicates != 0 || !a.Converged {
				t.Errorf("created %d (want %d), %d duplicates, converged %v", a.Created, tc.n, a.Duplicates, a.Converged)
			}
			if a.Throttled > tc.max429 {
				t.Errorf("%d answers were 429, want <= %d", a.Throttled, tc.max429)
			}
			if a.Wait.GetsPerDeviceCalls != 0 {
				t.Errorf("%d device GETs while waiting, want 0", a.Wait.GetsPerDeviceCalls)
			}
			// Waiting may take at most 5 % of the requests the creates
			// needed while they are sent, plus what learning T and the
			// tail cost: T at one poll per second, then polls every 200 ms
			// for at most T after the last create.
			maxListings := tc.n*5/100 + 1 + 2*int(tc.lim.T/tailPoll) + 2
			if a.Wait.WaitListings > maxListings {
				t.Errorf("%d listings while waiting, want <= %d", a.Wait.WaitListings, maxListings)
			}
			// The lease (pkg/lease) lives in the project's customdata: a
			// few reads and writes of the project, a second round when the
			// first met a 429.
			lease := a.ByRoute["GET /projects/{id}"] + a.ByRoute["PUT /projects/{id}"]
			if lease > 10 {
				t.Errorf("%d project reads and writes for the lease, want <= 10", lease)
			}
			if other := a.Requests - a.CreatePosts - a.Wait.WaitListings - a.Wait.PlanListings - lease; other > 8 {
				t.Errorf("%d requests besides creates, listings and the lease, want <= 8 (catalogue, capacity)", other)
			}
		})
	}
}

// tailPoll is the watcher's shortest gap between polls (executor's
// tailGap), which bounds the tail's listings.
const tailPoll = 200 * time.Millisecond
