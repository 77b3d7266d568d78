// Command chaos runs the reliability suite of DESIGN section 10 against the
// built lkfleet binary: chaos runs (faults, ambiguous creates, failed
// provisions, list lag, foreign devices) for fleets of 60 and 300 devices
// and several seeds, interruption trials with a real SIGINT, and simulator
// restarts. It prints one table and exits 1 if any guarantee broke.
//
//	make chaos            # builds bin/lkfleet, then: go run ./chaos -bin bin/lkfleet
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lkfleet/lkfleet/chaos/harness"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "bin/lkfleet", "the lkfleet binary to test")
	seeds := fs.String("seeds", "1,2,3", "simulator seeds, comma-separated")
	sizes := fs.String("sizes", "60,300", "fleet sizes (multiples of 6: two groups in three zones)")
	faultRate := fs.Float64("fault-rate", 0.05, "simulator --fault-rate")
	ambiguous := fs.Float64("ambiguous-create-rate", 0.05, "simulator --ambiguous-create-rate")
	failProv := fs.Float64("fail-provision-rate", 0.03, "simulator --fail-provision-rate")
	listLag := fs.Duration("list-lag", time.Second, "simulator --list-lag")
	provision := fs.Duration("provision-time", 200*time.Millisecond, "simulator --provision-time")
	poll := fs.Duration("poll-interval", 100*time.Millisecond, "apply --poll-interval")
	foreign := fs.Int("foreign", 15, "foreign devices seeded into the project")
	verbose := fs.Bool("v", false, "print every step")
	trials := fs.Bool("trials", true, "also run the interrupt, restart and SIGKILL trials")
	killTrials := fs.Int("kill-trials", 20, "SIGKILL trials (seeded by the first seed)")
	highLag := fs.Duration("high-list-lag", 6*time.Second, "list lag of the high-lag chaos run")
	killsOnly := fs.Bool("only-kills", false, "run only the SIGKILL trials and the high-lag run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if _, err := os.Stat(*bin); err != nil {
		fmt.Fprintf(stderr, "chaos: %v (run 'make build' first)\n", err)
		return 2
	}
	var seedList []uint64
	for f := range strings.SplitSeq(*seeds, ",") {
		s, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "chaos: seed %q: %v\n", f, err)
			return 2
		}
		seedList = append(seedList, s)
	}
	var sizeList []int
	for f := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n%6 != 0 {
			fmt.Fprintf(stderr, "chaos: size %q: want a positive multiple of 6\n", f)
			return 2
		}
		sizeList = append(sizeList, n)
	}
	logf := func(format string, a ...any) {
		if *verbose {
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}
	runner := harness.Subprocess(*bin)
	tmp, err := os.MkdirTemp("", "lkfleet-chaos-")
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	dir := func() string {
		d, _ := os.MkdirTemp(tmp, "run-")
		return d
	}

	kills := killSuite{bin: *bin, seed: seedList[0], trials: *killTrials, listLag: *listLag, highLag: *highLag,
		provision: *provision, poll: *poll, dir: dir, logf: logf}
	if *killsOnly {
		return onlyKills(ctx, kills, stdout, stderr)
	}

	failed := false
	fmt.Fprintf(stdout, "lkfleet chaos: fault rate %g, ambiguous creates %g, failed provisions %g, list lag %s, provision %s, poll %s, %d foreign devices\n\n",
		*faultRate, *ambiguous, *failProv, *listLag, *provision, *poll, *foreign)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tseed\tdevices\tfaults injected\tcreates\tapplies\texit codes\tduplicates\tforeign changes\ttime\tresult\t")
	var total harness.ChaosResult
	total.Faults = map[string]int{}
	runs := 0
	for _, size := range sizeList {
		for _, seed := range seedList {
			runs++
			fmt.Fprintf(stderr, "chaos run %d: %d devices, seed %d...\n", runs, size, seed)
			res, err := harness.Chaos(ctx, harness.ChaosConfig{
				Dir: dir(), Count: size / 6, Foreign: *foreign, Seed: seed,
				FaultRate: *faultRate, AmbiguousCreateRate: *ambiguous, FailProvisionRate: *failProv,
				ListLag: *listLag, ProvisionTime: *provision, Poll: *poll, Logf: logf,
			}, runner)
			if err != nil {
				fmt.Fprintf(stderr, "chaos run %d: %v\n", runs, err)
				return 1
			}
			verdict := "ok"
			if len(res.Problems) > 0 {
				verdict, failed = "FAIL", true
				for _, p := range res.Problems {
					fmt.Fprintf(stderr, "chaos run %d (seed %d, %d devices): %s\n", runs, seed, size, p)
				}
			}
			applies := strconv.Itoa(res.Applies)
			if res.Applies == 0 {
				applies = "never"
			}
			fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t\n", runs, seed, res.Devices, faults(res.Faults),
				res.Creates, applies, codes(res.Codes), res.Duplicates+res.ListedDuplicates, len(res.ForeignChanged),
				res.Took.Round(100*time.Millisecond), verdict)
			total.Devices += res.Devices
			total.Creates += res.Creates
			total.Duplicates += res.Duplicates + res.ListedDuplicates
			total.ForeignChanged = append(total.ForeignChanged, res.ForeignChanged...)
			for k, v := range res.Faults {
				total.Faults[k] += v
			}
		}
	}
	fmt.Fprintf(tw, "total\t\t%d\t%s\t%d\t\t\t%d\t%d\t\t\t\n", total.Devices, faults(total.Faults), total.Creates, total.Duplicates, len(total.ForeignChanged))
	tw.Flush()
	if !*trials {
		if failed {
			fmt.Fprintln(stdout, "\nFAIL: some guarantees broke (details on stderr)")
			return 1
		}
		fmt.Fprintf(stdout, "\nPASS: %d chaos runs: zero duplicates, zero foreign changes\n", runs)
		return 0
	}

	// Interruptions: a real SIGINT at five points of an apply, on a
	// simulator with faults, then the resume.
	fmt.Fprintf(stderr, "interrupt trials...\n")
	results, err := harness.Interrupts(ctx, harness.InterruptConfig{
		Dir: dir(), Count: 5, Seed: seedList[0], FaultRate: *faultRate, AmbiguousCreateRate: *ambiguous,
		ListLag: *listLag, ProvisionTime: *provision, Poll: *poll, Logf: logf,
	}, runner)
	if err != nil {
		fmt.Fprintf(stderr, "interrupt trials: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "\nInterrupt trials (SIGINT to the process; fleet of 30 growing to 90 and back):\n\n")
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SIGINT\texit\tstopped in\tsummary\tdone/not done/failed\tresume applies\tduplicates\tresult")
	for _, r := range results {
		verdict := "ok"
		if len(r.Problems) > 0 {
			verdict, failed = "FAIL", true
			for _, p := range r.Problems {
				fmt.Fprintf(stderr, "interrupt %s: %s\n", r.Name, p)
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d/%d/%d\t%d\t%d\t%s\n", r.Name, r.Code, r.Stopped.Round(time.Millisecond),
			cmpOr(r.Outcome, "(planning; no changes)"), r.Done, r.NotDone, r.Failed, r.Resumes, r.Duplicates, verdict)
	}

	// Restarts: the simulator (with a state file) goes away mid-apply.
	for _, rc := range []struct {
		name  string
		down  time.Duration
		extra []string
	}{
		{"back after 2s", 2 * time.Second, nil},
		{"stays down (--timeout 15s)", 0, []string{"--timeout", "15s"}},
	} {
		fmt.Fprintf(stderr, "restart trial: %s...\n", rc.name)
		r, err := harness.Restart(ctx, harness.RestartConfig{Dir: dir(), Count: 5, ProvisionTime: *provision, Poll: *poll, Down: rc.down, ExtraArgs: rc.extra}, runner)
		if err != nil {
			fmt.Fprintf(stderr, "restart trial %s: %v\n", rc.name, err)
			return 1
		}
		verdict := "ok"
		if len(r.Problems) > 0 {
			verdict, failed = "FAIL", true
			for _, p := range r.Problems {
				fmt.Fprintf(stderr, "restart %s: %s\n", rc.name, p)
			}
		}
		fmt.Fprintf(tw, "sim restart: %s\t%d\t%s\t%s\t\t%d\t%d\t%s\n", rc.name, r.Code, r.Took.Round(time.Millisecond),
			cmpOr(lastLine(r.Stderr), "complete"), max(r.Resumes, 0), r.Duplicates, verdict)
	}
	tw.Flush()
	if ok, err := runKills(ctx, kills, stdout, stderr); err != nil || !ok {
		if err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
		}
		failed = true
	}
	if failed {
		fmt.Fprintln(stdout, "\nFAIL: some guarantees broke (details on stderr)")
		return 1
	}
	fmt.Fprintf(stdout, "\nPASS: %d chaos runs, %d interrupt trials, 2 restart trials, %d SIGKILL trials, a high list lag: zero duplicates, zero foreign changes, zero empty slots, zero stale images\n",
		runs, len(results), *killTrials)
	return 0
}

// faults renders fault counts as "500:3 dropped:2 ...", sorted by kind.
func faults(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s:%d", short(k), m[k]))
	}
	return strings.Join(parts, " ")
}

// short abbreviates the long fault kinds for the table.
func short(kind string) string {
	switch kind {
	case packetsim.FaultAmbiguousCreate:
		return "ambiguous"
	case packetsim.FaultFailedProvision:
		return "failed-prov"
	}
	return kind
}

func codes(cs []int) string {
	var s []string
	for _, c := range cs {
		s = append(s, strconv.Itoa(c))
	}
	return strings.Join(s, ",")
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
