package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/lkfleet/lkfleet/chaos/harness"
)

// newSuite configures the trials that close issue 14: concurrent applies
// of one fleet with the simulator sampled while they run, and simulator
// SIGKILLs with --state and a second fleet.
type newSuite struct {
	bin                            string
	seed                           uint64
	two, three                     int // fleet sizes of the 2- and 3-apply trials (0 skips)
	simKills                       int
	simBin                         string
	faultRate, ambiguous, failProv float64
	listLag, provision, poll       time.Duration
	foreign                        int
	dir                            func() string
	logf                           func(string, ...any)
}

// concurrentCases are the concurrent-apply trials: applies, fleet size
// (from the flags), when the last starts, and --lock-timeout.
func (s newSuite) concurrentCases() []harness.ConcurrentConfig {
	var out []harness.ConcurrentConfig
	add := func(size, applies int, late, timeout time.Duration) {
		if size > 0 {
			out = append(out, harness.ConcurrentConfig{Count: size / 6, Applies: applies, Late: late, LockTimeout: timeout})
		}
	}
	add(s.two, 2, 0, 10*time.Minute)
	add(s.three, 3, 1500*time.Millisecond, 10*time.Minute)
	add(s.two, 2, 0, 0)
	add(s.two, 3, 1500*time.Millisecond, 0)
	return out
}

// runNew runs both groups, prints their tables and reports whether
// every guarantee held.
func runNew(ctx context.Context, s newSuite, stdout, stderr io.Writer) (bool, error) {
	ok, err := runConcurrent(ctx, s, stdout, stderr)
	if err != nil {
		return false, err
	}
	if s.simKills == 0 {
		return ok, nil
	}
	ok2, err := runSimKills(ctx, s, stdout, stderr)
	return ok && ok2, err
}

func runConcurrent(ctx context.Context, s newSuite, stdout, stderr io.Writer) (bool, error) {
	cases := s.concurrentCases()
	if len(cases) == 0 {
		return true, nil
	}
	fmt.Fprintf(stdout, "\nConcurrent applies of one fleet (subprocesses; fault rate %g, ambiguous creates %g, failed provisions %g, list lag %s, %d foreign devices; live devices per slot sampled from the simulator every 2 ms):\n\n",
		s.faultRate, s.ambiguous, s.failProv, s.listLag, s.foreign)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "trial\texit codes\trefused/waited\tpeak live per slot\tsamples\tcreates (extra)\tfaults injected\tduplicates\tempty slots\tforeign changes\tplan\ttime\tresult")
	ok := true
	var dups, empty, foreign, extra, peak int
	for i, c := range cases {
		c.Dir, c.Bin, c.Seed, c.Foreign, c.Logf = s.dir(), s.bin, s.seed+uint64(i), s.foreign, s.logf
		c.FaultRate, c.AmbiguousCreateRate, c.FailProvisionRate = s.faultRate, s.ambiguous, s.failProv
		c.ListLag, c.ProvisionTime, c.Poll = s.listLag, s.provision, s.poll
		fmt.Fprintf(stderr, "concurrent applies: %d × %d devices, --lock-timeout %s...\n", c.Applies, 6*c.Count, c.LockTimeout)
		r, err := harness.Concurrent(ctx, c)
		if err != nil {
			return false, fmt.Errorf("concurrent trial %d: %w", i+1, err)
		}
		v := verdict(stderr, "concurrent "+r.Name, r.Problems)
		ok = ok && v == "ok"
		codes := codes(r.Codes)
		if r.FollowUp {
			codes += " +1 apply"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%d\t%d\t%d (%d)\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Name, codes, r.Refused, r.Waited,
			r.PeakLive, r.Samples, r.Creates, r.ExtraCreates, faults(r.Faults), r.Duplicates, r.Empty, len(r.ForeignChanged),
			r.PlanCode, r.Took.Round(100*time.Millisecond), v)
		dups, empty, foreign, extra, peak = dups+r.Duplicates, empty+r.Empty, foreign+len(r.ForeignChanged), extra+r.ExtraCreates, max(peak, r.PeakLive)
	}
	fmt.Fprintf(tw, "total (%d trials)\t\t\t%d (most)\t\t(%d)\t\t%d\t%d\t%d\t\t\t\n", len(cases), peak, extra, dups, empty, foreign)
	tw.Flush()
	return ok, nil
}

func runSimKills(ctx context.Context, s newSuite, stdout, stderr io.Writer) (bool, error) {
	fmt.Fprintf(stderr, "simulator SIGKILL trials (%d)...\n", s.simKills)
	results, err := harness.SimKills(ctx, harness.SimKillConfig{
		Dir: s.dir(), Bin: s.bin, SimBin: s.simBin, Count: 2, Seed: s.seed, Trials: s.simKills,
		ListLag: s.listLag, ProvisionTime: s.provision, Poll: s.poll, Logf: s.logf,
	})
	if err != nil {
		return false, fmt.Errorf("simulator SIGKILL trials: %w", err)
	}
	fmt.Fprintf(stdout, "\nSimulator SIGKILL (lkfleet sim --state as a subprocess, killed right after a create of fleet A was answered 201, back 500 ms later), then A again, a second fleet B in the project, destroy A (12 devices each, 4 foreign, list lag %s):\n\n", s.listLag)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "trial\tanswered before kill\tlost\texit codes (A killed, A, B, destroy A)\tlongest run\treused ids\tids in both\tduplicates\tempty slots\tdestroy touched\tA left\ttime\tresult")
	ok := true
	var lost, reused, shared, dups, empty, touched, left int
	for _, r := range results {
		v := verdict(stderr, "simulator SIGKILL "+r.Name, r.Problems)
		ok = ok && v == "ok"
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", r.Name, r.Answered, r.Lost, codes(r.Codes),
			r.Longest.Round(100*time.Millisecond), r.Reused, r.Shared, r.Duplicates, r.Empty, len(r.Touched), r.Left,
			r.Took.Round(100*time.Millisecond), v)
		lost, reused, shared, dups = lost+r.Lost, reused+r.Reused, shared+r.Shared, dups+r.Duplicates
		empty, touched, left = empty+r.Empty, touched+len(r.Touched), left+r.Left
	}
	fmt.Fprintf(tw, "total (%d trials)\t\t%d\t\t\t%d\t%d\t%d\t%d\t%d\t%d\t\t\n", len(results), lost, reused, shared, dups, empty, touched, left)
	tw.Flush()
	return ok, nil
}
