package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/lkfleet/lkfleet/chaos/harness"
)

// killSuite configures the trials added for issue 14: SIGKILL at random
// points with an immediate re-run, and a chaos run with a list lag above
// the old hard-coded 5 s.
type killSuite struct {
	bin              string
	seed             uint64
	trials           int
	listLag, highLag time.Duration
	provision, poll  time.Duration
	dir              func() string
	logf             func(string, ...any)
}

// alone runs one group of trials by itself (chaos -only-kills, -only-new)
// and returns the exit code; pass is the line printed when every
// guarantee held.
func alone(run func() (bool, error), pass string, stdout, stderr io.Writer) int {
	ok, err := run()
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	if !ok {
		fmt.Fprintln(stdout, "\nFAIL: some guarantees broke (details on stderr)")
		return 1
	}
	fmt.Fprintln(stdout, "\nPASS: "+pass)
	return 0
}

// runKills runs the suite, prints its table and reports whether every
// guarantee held.
func runKills(ctx context.Context, s killSuite, stdout, stderr io.Writer) (bool, error) {
	ok := true
	fmt.Fprintf(stderr, "SIGKILL trials (%d, seed %d)...\n", s.trials, s.seed)
	results, err := harness.Kills(ctx, harness.KillConfig{
		Dir: s.dir(), Bin: s.bin, Count: 2, Seed: s.seed, Trials: s.trials,
		ListLag: s.listLag, ProvisionTime: s.provision, Poll: s.poll, Logf: s.logf,
	})
	if err != nil {
		return false, fmt.Errorf("SIGKILL trials: %w", err)
	}
	fmt.Fprintf(stdout, "\nSIGKILL trials (kill -9 at a seeded random request, re-run at once within the %s list lag; fleet of 12 <-> 24):\n\n", s.listLag)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "trial\tkilled\tpending after kill\tre-runs\textra creates\tduplicates\tempty slots\tstale images\tresult")
	var extra, dups, empty, stale int
	for _, r := range results {
		verdict := "ok"
		if len(r.Problems) > 0 {
			verdict, ok = "FAIL", false
			for _, p := range r.Problems {
				fmt.Fprintf(stderr, "SIGKILL %s: %s\n", r.Name, p)
			}
		}
		extra, dups, empty, stale = extra+r.ExtraCreates, dups+r.Duplicates, empty+r.Empty, stale+r.Stale
		fmt.Fprintf(tw, "%s\t%v\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", r.Name, r.Killed, r.Pending, r.Resumes, r.ExtraCreates, r.Duplicates, r.Empty, r.Stale, verdict)
	}
	fmt.Fprintf(tw, "total (%d trials)\t\t\t\t%d\t%d\t%d\t%d\t\n", len(results), extra, dups, empty, stale)
	tw.Flush()

	fmt.Fprintf(stderr, "high list lag (%s)...\n", s.highLag)
	res, err := harness.Chaos(ctx, harness.ChaosConfig{
		Dir: s.dir(), Count: 10, Foreign: 10, Seed: s.seed, FaultRate: 0.05, AmbiguousCreateRate: 0.05,
		ListLag: s.highLag, ProvisionTime: s.provision, Poll: s.poll, Logf: s.logf,
	}, harness.Subprocess(s.bin))
	if err != nil {
		return false, fmt.Errorf("high list lag run: %w", err)
	}
	verdict := "ok"
	if len(res.Problems) > 0 {
		verdict, ok = "FAIL", false
		for _, p := range res.Problems {
			fmt.Fprintf(stderr, "high list lag: %s\n", p)
		}
	}
	fmt.Fprintf(stdout, "\nHigh list lag: %d devices, simulator list lag %s (apply told by LKFLEET_LIST_LAG), faults %v: %d creates, applies %d, duplicates %d, foreign changes %d, %s: %s\n",
		res.Devices, s.highLag, res.Faults, res.Creates, res.Applies, res.Duplicates+res.ListedDuplicates, len(res.ForeignChanged),
		res.Took.Round(100*time.Millisecond), verdict)
	return ok, nil
}
