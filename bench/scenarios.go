package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// applyResult is one "apply N creates" run, with its wait cost.
type applyResult struct {
	N            int            `json:"n"`
	R            float64        `json:"rate_limit_per_s"`
	B            int            `json:"burst"`
	TS           float64        `json:"provision_time_s"`
	WallS        float64        `json:"wall_s"`
	BoundS       float64        `json:"bound_s"`
	Ratio        float64        `json:"ratio"`
	Requests     int            `json:"requests"`
	CreatePosts  int            `json:"create_posts"`
	Created      int            `json:"devices_created"`
	Throttled    int            `json:"throttled_429"`
	ThrottledPct float64        `json:"throttled_pct"`
	PeakInFlight int            `json:"peak_in_flight"`
	Duplicates   int            `json:"duplicates"`
	CPUS         float64        `json:"cpu_s"`
	MaxRSSMiB    float64        `json:"max_rss_mib"`
	Converged    bool           `json:"converged"` // a plan right after says no changes
	Wait         waitCost       `json:"wait"`
	Phases       phases         `json:"phases"`
	ByRoute      map[string]int `json:"requests_by_route"`
}

// waitCost is what waiting for provisioning devices cost in listings.
type waitCost struct {
	N                  int     `json:"n"`
	PlanListings       int     `json:"plan_listings"`
	ApplyListings      int     `json:"apply_listings"`
	WaitListings       int     `json:"wait_listings"`
	WaitSpanS          float64 `json:"wait_span_s"`
	ListingsPerSecond  float64 `json:"listings_per_s"`
	MinGapS            float64 `json:"min_gap_s"`
	DeviceMinutes      float64 `json:"device_minutes"`
	PerDeviceMinute    float64 `json:"listings_per_device_minute"`
	GetsPerDeviceCalls int     `json:"device_gets"`
	// BudgetShare is the share of the request budget (R × span) the
	// waiting listings took from the first create to the exit; CallShare
	// the share they took while calls were still being sent, when the
	// budget was needed for them.
	BudgetShare float64 `json:"budget_share"`
	CallShare   float64 `json:"share_during_calls"`
}

// createBound is the request bound of N creates under the default
// limits (see limits.createBound).
func createBound(n int) time.Duration { return defaultLimits.createBound(n) }

// rebootBound is the earliest a reboot rebuild of N devices can be done: each
// device takes two calls (a PUT with the new tags and userdata, then the
// reboot action), the first B pass at once and the rest at R/s, and the
// last device boots T/5 after its reboot (the simulator's reboot boot
// time).
func rebootBound(n int) time.Duration {
	return time.Duration(float64(max(2*n-burstB, 0))/rateR*float64(time.Second)) + provT/5
}

// benchApply creates n devices with `lkfleet apply` on a fresh simulator.
// The recorder's timeline splits the run: listings after the first create
// are what waiting cost, the ones before it what planning cost.
func benchApply(ctx context.Context, o opts, n int) (applyResult, error) {
	return benchApplyWith(ctx, o, n, defaultLimits)
}

// benchApplyWith is benchApply on a simulator with limits lim, which the
// client is not told: it learns them from the answers.
func benchApplyWith(ctx context.Context, o opts, n int, lim limits) (applyResult, error) {
	name := fmt.Sprintf("apply-%d-r%g-b%d", n, lim.R, lim.B)
	b, err := newBedWith(o.bin, mkdir(o.tmp, name), o.images, n, lim)
	if err != nil {
		return applyResult{}, err
	}
	defer b.close()
	ap, err := b.must(ctx, 0, "apply", "-f", b.fleet, "--auto-approve", "-o", "plain")
	if err != nil {
		return applyResult{}, err
	}
	lim.settle()
	after, err := b.cli(ctx, "plan", "-f", b.fleet, "--detailed-exitcode")
	if err != nil {
		return applyResult{}, err
	}
	if dir := os.Getenv("BENCH_TIMELINE"); dir != "" {
		writeTimeline(filepath.Join(dir, name+".tsv"), ap.Timeline)
	}
	st := ap.Stats
	bound := lim.createBound(n)
	r := applyResult{
		N: n, R: lim.R, B: lim.B, TS: lim.T.Seconds(), WallS: ap.Wall.Seconds(), BoundS: bound.Seconds(), Ratio: ap.Wall.Seconds() / bound.Seconds(),
		Requests: st.Total, CreatePosts: st.Requests[routeCreate], Created: st.Creates,
		Throttled: st.Throttled, ThrottledPct: pct(st.Throttled, st.Total),
		PeakInFlight: st.PeakFlight, Duplicates: st.Duplicates,
		CPUS: ap.CPU.Seconds(), MaxRSSMiB: mib(ap.MaxRSS), Converged: after.Exit == 0,
		ByRoute: st.Requests,
	}
	ph := phasesOf(ap.Timeline)
	r.Phases = ph
	w := waitCost{N: n, ApplyListings: st.Requests[routeList], WaitListings: ph.ListingsAfter,
		GetsPerDeviceCalls: st.Requests[routeGet]}
	w.PlanListings = w.ApplyListings - w.WaitListings
	w.WaitSpanS = ap.Wall.Seconds() - ph.FirstCallS
	if w.WaitListings > 0 {
		// Polling every second from the first create on sends 1 + S
		// listings in S seconds: k listings cost (k-1)/S per second. The
		// arrival times of single listings jitter (a listing may queue in
		// the client's pacer behind calls), their number over the span
		// does not.
		w.ListingsPerSecond = float64(w.WaitListings-1) / w.WaitSpanS
	}
	w.MinGapS = ph.MinGapS
	w.DeviceMinutes = float64(n) * lim.T.Minutes()
	w.PerDeviceMinute = float64(w.WaitListings) / w.DeviceMinutes
	if w.WaitSpanS > 0 {
		w.BudgetShare = float64(w.WaitListings) / (lim.R * w.WaitSpanS)
	}
	if callSpan := ph.LastCallS - ph.FirstCallS; callSpan > 0 {
		w.CallShare = float64(ph.ListingsDuring) / (lim.R * callSpan)
	}
	r.Wait = w
	return r, nil
}

// planResult is one `lkfleet plan` over an existing fleet.
type planResult struct {
	Fleet     int            `json:"fleet_devices"`
	Foreign   int            `json:"foreign_devices"`
	Requests  int            `json:"requests"`
	Limit     int            `json:"request_limit"`
	WallS     float64        `json:"wall_s"`
	CPUS      float64        `json:"cpu_s"`
	MaxRSSMiB float64        `json:"max_rss_mib"`
	NoChanges bool           `json:"no_changes"`
	ByRoute   map[string]int `json:"requests_by_route"`
}

// seededBed starts a simulator holding fleet devices seeded exactly as an
// apply leaves them, plus foreign devices.
func seededBed(ctx context.Context, o opts, name string, fleet, foreign int) (*bed, error) {
	b, err := newBed(o.bin, mkdir(o.tmp, name), o.images, fleet)
	if err != nil {
		return nil, err
	}
	if _, err := b.seedFleet(ctx); err != nil {
		b.close()
		return nil, err
	}
	if err := b.seedForeign(foreign); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// benchPlan runs `lkfleet plan --detailed-exitcode` over b's seeded fleet;
// exit 0 (no changes) proves the seeding matches what apply would leave.
func benchPlan(ctx context.Context, b *bed, fleet, foreign int) (planResult, error) {
	r, err := b.must(ctx, 0, "plan", "-f", b.fleet, "--detailed-exitcode")
	if err != nil {
		return planResult{}, fmt.Errorf("plan over %d seeded devices (exit 0 means the seeding matches an apply): %w", fleet, err)
	}
	return planResult{
		Fleet: fleet, Foreign: foreign, Requests: r.Stats.Total, Limit: (fleet+999)/1000 + 4, // pages + 3 catalogue + 1 lease read
		WallS: r.Wall.Seconds(), CPUS: r.CPU.Seconds(), MaxRSSMiB: mib(r.MaxRSS), NoChanges: r.Exit == 0,
		ByRoute: r.Stats.Requests,
	}, nil
}

// rebuildResult is one nightly rebuild (`apply --rebuild all`, reboot).
type rebuildResult struct {
	N          int            `json:"n"`
	WallS      float64        `json:"wall_s"`
	BoundS     float64        `json:"bound_s"`
	Ratio      float64        `json:"ratio"`
	Requests   int            `json:"requests"`
	Puts       int            `json:"puts"`
	Reboots    int            `json:"reboot_actions"`
	Listings   int            `json:"listings"`
	PerDevice  float64        `json:"requests_per_device"`
	Throttled  int            `json:"throttled_429"`
	Booted     int            `json:"devices_booted_again"`
	CPUS       float64        `json:"cpu_s"`
	MaxRSSMiB  float64        `json:"max_rss_mib"`
	Converged  bool           `json:"converged"`
	ByRoute    map[string]int `json:"requests_by_route"`
	PeakFlight int            `json:"peak_in_flight"`
	Phases     phases         `json:"phases"`
}

// benchRebuild reboots every device of b's seeded fleet into its image and
// waits until each one booted again.
func benchRebuild(ctx context.Context, b *bed, n int) (rebuildResult, error) {
	start := time.Now()
	r, err := b.must(ctx, 0, "apply", "-f", b.fleet, "--rebuild", "all", "--wait", "booted", "--auto-approve", "-o", "plain")
	if err != nil {
		return rebuildResult{}, err
	}
	booted := map[string]bool{}
	for _, bt := range b.sim.Boots() {
		if bt.OK && bt.Time.After(start) {
			booted[bt.DeviceID] = true
		}
	}
	settle()
	after, err := b.cli(ctx, "plan", "-f", b.fleet, "--detailed-exitcode")
	if err != nil {
		return rebuildResult{}, err
	}
	st := r.Stats
	bound := rebootBound(n)
	return rebuildResult{
		N: n, WallS: r.Wall.Seconds(), BoundS: bound.Seconds(), Ratio: r.Wall.Seconds() / bound.Seconds(),
		Requests: st.Total, Puts: st.Requests[routePut], Reboots: st.Requests[routeAction], Listings: st.Requests[routeList],
		PerDevice: float64(st.Total) / float64(n), Throttled: st.Throttled, Booted: len(booted),
		CPUS: r.CPU.Seconds(), MaxRSSMiB: mib(r.MaxRSS), Converged: after.Exit == 0, ByRoute: st.Requests,
		PeakFlight: st.PeakFlight, Phases: phasesOf(r.Timeline),
	}, nil
}

func pct(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// mkdir creates parent/name and returns it; a failure surfaces when the
// scenario writes its fleet file there.
func mkdir(parent, name string) string {
	d := filepath.Join(parent, name)
	os.MkdirAll(d, 0o755)
	return d
}

// writeTimeline writes a run's requests, one a line (seconds from the
// process start, route, status), for reading where the time went; set
// BENCH_TIMELINE to a directory to get one file per apply scenario.
func writeTimeline(path string, tl []reqEvent) {
	var b strings.Builder
	for _, e := range tl {
		fmt.Fprintf(&b, "%.4f\t%s\t%d\n", e.At.Seconds(), e.Route, e.Status)
	}
	os.WriteFile(path, []byte(b.String()), 0o644)
}
