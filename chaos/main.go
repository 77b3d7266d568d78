// Command chaos runs the reliability suite of DESIGN section 10 against the
// built lkfleet binary: chaos runs (faults, ambiguous creates, failed
// provisions, list lag, foreign devices) for fleets of 60 and 300 devices
// and several seeds, interruption trials with a real SIGINT, simulator
// restarts, SIGKILLs of apply, concurrent applies of one fleet (sampled
// from the simulator while they run) and SIGKILLs of a simulator with a
// state file. It prints its tables and exits 1 if any guarantee broke.
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

// options are the parsed flags of one chaos invocation.
type options struct {
	bin                            string
	seeds                          []uint64
	sizes                          []int
	faultRate, ambiguous, failProv float64
	listLag, provision, poll       time.Duration
	foreign                        int
	verbose, trials, killsOnly     bool
	killTrials                     int
	highLag                        time.Duration
	// The concurrent-apply and simulator-kill trials (chaos/concurrent.go).
	concurrentTwo, concurrentThree int
	simKills                       int
	newOnly                        bool
	simBin                         string
}

// parseOptions parses the flags and checks them; on a bad flag it has
// already said why on stderr and returns false (exit code 2).
func parseOptions(args []string, stderr io.Writer) (options, bool) {
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "bin/lkfleet", "the lkfleet binary to test")
	seeds := fs.String("seeds", "1,2,3", "simulator seeds, comma-separated")
	sizes := fs.String("sizes", "60,300", "fleet sizes (multiples of 6: two groups in three zones)")
	fs.Float64Var(&o.faultRate, "fault-rate", 0.05, "simulator --fault-rate")
	fs.Float64Var(&o.ambiguous, "ambiguous-create-rate", 0.05, "simulator --ambiguous-create-rate")
	fs.Float64Var(&o.failProv, "fail-provision-rate", 0.03, "simulator --fail-provision-rate")
	fs.DurationVar(&o.listLag, "list-lag", time.Second, "simulator --list-lag")
	fs.DurationVar(&o.provision, "provision-time", 200*time.Millisecond, "simulator --provision-time")
	fs.DurationVar(&o.poll, "poll-interval", 100*time.Millisecond, "apply --poll-interval")
	fs.IntVar(&o.foreign, "foreign", 15, "foreign devices seeded into the project")
	fs.BoolVar(&o.verbose, "v", false, "print every step")
	fs.BoolVar(&o.trials, "trials", true, "also run the interrupt, restart and SIGKILL trials")
	fs.IntVar(&o.killTrials, "kill-trials", 20, "SIGKILL trials (seeded by the first seed)")
	fs.DurationVar(&o.highLag, "high-list-lag", 6*time.Second, "list lag of the high-lag chaos run")
	fs.BoolVar(&o.killsOnly, "only-kills", false, "run only the SIGKILL trials and the high-lag run")
	fs.IntVar(&o.concurrentTwo, "concurrent-2", 102, "fleet size of the trials with 2 concurrent applies (and 3 with --lock-timeout 0); 0 skips them")
	fs.IntVar(&o.concurrentThree, "concurrent-3", 204, "fleet size of the trial with 3 concurrent applies waiting for each other; 0 skips it")
	fs.IntVar(&o.simKills, "sim-kills", 5, "simulator SIGKILL/restart trials with a second fleet (seeded by the first seed); 0 skips them")
	fs.StringVar(&o.simBin, "sim-bin", "", "binary whose 'sim' the simulator SIGKILL trials run (default: -bin), to measure another build's simulator")
	fs.BoolVar(&o.newOnly, "only-new", false, "run only the concurrent-apply and simulator SIGKILL trials")
	if err := fs.Parse(args); err != nil {
		return o, false
	}
	if _, err := os.Stat(o.bin); err != nil {
		fmt.Fprintf(stderr, "chaos: %v (run 'make build' first)\n", err)
		return o, false
	}
	for f := range strings.SplitSeq(*seeds, ",") {
		s, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "chaos: seed %q: %v\n", f, err)
			return o, false
		}
		o.seeds = append(o.seeds, s)
	}
	for _, n := range []int{o.concurrentTwo, o.concurrentThree} {
		if n < 0 || n%6 != 0 {
			fmt.Fprintf(stderr, "chaos: concurrent fleet size %d: want 0 or a positive multiple of 6\n", n)
			return o, false
		}
	}
	for f := range strings.SplitSeq(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || n%6 != 0 {
			fmt.Fprintf(stderr, "chaos: size %q: want a positive multiple of 6\n", f)
			return o, false
		}
		o.sizes = append(o.sizes, n)
	}
	return o, true
}

// suite is what every group of runs and trials shares: the options, the
// binary under test, a fresh scratch directory per run, and the output.
type suite struct {
	options
	runner         harness.Runner
	dir            func() string
	logf           func(string, ...any)
	stdout, stderr io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, ok := parseOptions(args, stderr)
	if !ok {
		return 2
	}
	logf := func(format string, a ...any) {
		if o.verbose {
			fmt.Fprintf(stderr, format+"\n", a...)
		}
	}
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
	s := suite{options: o, runner: harness.Subprocess(o.bin), dir: dir, logf: logf, stdout: stdout, stderr: stderr}

	kills := killSuite{bin: o.bin, seed: o.seeds[0], trials: o.killTrials, listLag: o.listLag, highLag: o.highLag,
		provision: o.provision, poll: o.poll, dir: dir, logf: logf}
	if o.killsOnly {
		return alone(func() (bool, error) { return runKills(ctx, kills, stdout, stderr) }, "zero duplicates, zero empty slots, zero stale images", stdout, stderr)
	}
	fresh := newSuite{bin: o.bin, seed: o.seeds[0], two: o.concurrentTwo, three: o.concurrentThree, simKills: o.simKills, simBin: o.simBin,
		faultRate: o.faultRate, ambiguous: o.ambiguous, failProv: o.failProv, listLag: o.listLag,
		provision: o.provision, poll: o.poll, foreign: o.foreign, dir: dir, logf: logf}
	if o.newOnly {
		return alone(func() (bool, error) { return runNew(ctx, fresh, stdout, stderr) }, "no slot ever held two live devices; zero duplicates, zero empty slots, zero foreign changes, no answered create lost, no id reused", stdout, stderr)
	}

	runs, ok, err := s.chaosRuns(ctx)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	failed := !ok
	if !o.trials {
		if failed {
			fmt.Fprintln(stdout, "\nFAIL: some guarantees broke (details on stderr)")
			return 1
		}
		fmt.Fprintf(stdout, "\nPASS: %d chaos runs: zero duplicates, zero foreign changes\n", runs)
		return 0
	}

	interrupts, ok, err := s.interruptAndRestartTrials(ctx)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	failed = failed || !ok
	if ok, err := runKills(ctx, kills, stdout, stderr); err != nil || !ok {
		if err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
		}
		failed = true
	}
	if ok, err := runNew(ctx, fresh, stdout, stderr); err != nil || !ok {
		if err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
		}
		failed = true
	}
	if failed {
		fmt.Fprintln(stdout, "\nFAIL: some guarantees broke (details on stderr)")
		return 1
	}
	fmt.Fprintf(stdout, "\nPASS: %d chaos runs, %d interrupt trials, 2 restart trials, %d SIGKILL trials, a high list lag, %d concurrent-apply trials, %d simulator SIGKILL trials: zero duplicates, zero foreign changes, zero empty slots, zero stale images, never two live devices in a slot\n",
		runs, interrupts, o.killTrials, len(fresh.concurrentCases()), o.simKills)
	return 0
}

// chaosRuns runs one chaos run per size and seed and prints their table.
// It returns how many ran and whether every guarantee held; an error
// means a run could not be carried out (its table is then not printed).
func (s *suite) chaosRuns(ctx context.Context) (runs int, ok bool, err error) {
	ok = true
	fmt.Fprintf(s.stdout, "lkfleet chaos: fault rate %g, ambiguous creates %g, failed provisions %g, list lag %s, provision %s, poll %s, %d foreign devices\n\n",
		s.faultRate, s.ambiguous, s.failProv, s.listLag, s.provision, s.poll, s.foreign)
	tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tseed\tdevices\tfaults injected\tcreates\tapplies\texit codes\tduplicates\tforeign changes\ttime\tresult\t")
	var total harness.ChaosResult
	total.Faults = map[string]int{}
	for _, size := range s.sizes {
		for _, seed := range s.seeds {
			runs++
			fmt.Fprintf(s.stderr, "chaos run %d: %d devices, seed %d...\n", runs, size, seed)
			res, err := harness.Chaos(ctx, harness.ChaosConfig{
				Dir: s.dir(), Count: size / 6, Foreign: s.foreign, Seed: seed,
				FaultRate: s.faultRate, AmbiguousCreateRate: s.ambiguous, FailProvisionRate: s.failProv,
				ListLag: s.listLag, ProvisionTime: s.provision, Poll: s.poll, Logf: s.logf,
			}, s.runner)
			if err != nil {
				return runs, false, fmt.Errorf("chaos run %d: %w", runs, err)
			}
			v := verdict(s.stderr, fmt.Sprintf("chaos run %d (seed %d, %d devices)", runs, seed, size), res.Problems)
			ok = ok && v == "ok"
			applies := strconv.Itoa(res.Applies)
			if res.Applies == 0 {
				applies = "never"
			}
			fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t\n", runs, seed, res.Devices, faults(res.Faults),
				res.Creates, applies, codes(res.Codes), res.Duplicates+res.ListedDuplicates, len(res.ForeignChanged),
				res.Took.Round(100*time.Millisecond), v)
			addTotal(&total, res)
		}
	}
	fmt.Fprintf(tw, "total\t\t%d\t%s\t%d\t\t\t%d\t%d\t\t\t\n", total.Devices, faults(total.Faults), total.Creates, total.Duplicates, len(total.ForeignChanged))
	tw.Flush()
	return runs, ok, nil
}

// addTotal adds one chaos run to the table's total row.
func addTotal(total *harness.ChaosResult, res harness.ChaosResult) {
	total.Devices += res.Devices
	total.Creates += res.Creates
	total.Duplicates += res.Duplicates + res.ListedDuplicates
	total.ForeignChanged = append(total.ForeignChanged, res.ForeignChanged...)
	for k, v := range res.Faults {
		total.Faults[k] += v
	}
}

// restartCases are the simulator restart trials, in order.
var restartCases = []struct {
	name  string
	down  time.Duration
	extra []string
}{
	{"back after 2s", 2 * time.Second, nil},
	{"stays down (--timeout 15s)", 0, []string{"--timeout", "15s"}},
}

// interruptAndRestartTrials runs the interrupt trials, then the restart
// trials, and prints both in one table. It returns how many interrupt
// trials ran and whether every guarantee held.
func (s *suite) interruptAndRestartTrials(ctx context.Context) (interrupts int, ok bool, err error) {
	// Interruptions: a real SIGINT at five points of an apply, on a
	// simulator with faults, then the resume.
	fmt.Fprintf(s.stderr, "interrupt trials...\n")
	results, err := harness.Interrupts(ctx, harness.InterruptConfig{
		Dir: s.dir(), Count: 5, Seed: s.seeds[0], FaultRate: s.faultRate, AmbiguousCreateRate: s.ambiguous,
		ListLag: s.listLag, ProvisionTime: s.provision, Poll: s.poll, Logf: s.logf,
	}, s.runner)
	if err != nil {
		return 0, false, fmt.Errorf("interrupt trials: %w", err)
	}
	fmt.Fprintf(s.stdout, "\nInterrupt trials (SIGINT to the process; fleet of 30 growing to 90 and back):\n\n")
	tw := tabwriter.NewWriter(s.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SIGINT\texit\tstopped in\tsummary\tdone/not done/failed\tresume applies\tduplicates\tresult")
	ok = true
	for _, r := range results {
		v := verdict(s.stderr, "interrupt "+r.Name, r.Problems)
		ok = ok && v == "ok"
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d/%d/%d\t%d\t%d\t%s\n", r.Name, r.Code, r.Stopped.Round(time.Millisecond),
			cmpOr(r.Outcome, "(planning; no changes)"), r.Done, r.NotDone, r.Failed, r.Resumes, r.Duplicates, v)
	}

	// Restarts: the simulator (with a state file) goes away mid-apply.
	for _, rc := range restartCases {
		fmt.Fprintf(s.stderr, "restart trial: %s...\n", rc.name)
		r, err := harness.Restart(ctx, harness.RestartConfig{Dir: s.dir(), Count: 5, ProvisionTime: s.provision, Poll: s.poll, Down: rc.down, ExtraArgs: rc.extra}, s.runner)
		if err != nil {
			return len(results), false, fmt.Errorf("restart trial %s: %w", rc.name, err)
		}
		v := verdict(s.stderr, "restart "+rc.name, r.Problems)
		ok = ok && v == "ok"
		fmt.Fprintf(tw, "sim restart: %s\t%d\t%s\t%s\t\t%d\t%d\t%s\n", rc.name, r.Code, r.Took.Round(time.Millisecond),
			cmpOr(lastLine(r.Stderr), "complete"), max(r.Resumes, 0), r.Duplicates, v)
	}
	tw.Flush()
	return len(results), ok, nil
}

// verdict is a table's result column for a run or trial: "ok", or "FAIL"
// after printing each of its problems on stderr under the run's name.
func verdict(stderr io.Writer, name string, problems []string) string {
	if len(problems) == 0 {
		return "ok"
	}
	for _, p := range problems {
		fmt.Fprintf(stderr, "%s: %s\n", name, p)
	}
	return "FAIL"
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
