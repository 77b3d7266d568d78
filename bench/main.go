// Command bench measures lkfleet against the in-process Packet API
// simulator (R = 50 requests/s, burst B = 20, provision time T = 5 s) and
// compares it with the physical bounds and with models of what people run
// instead. It runs the built binary (bin/lkfleet) as a child process, so
// wall time, CPU time and peak RSS are those of the real command, and the
// simulator counts every request it sends.
//
// Run it with `make bench` (or `go run ./bench` after `make build`) from the
// repository root. It prints a table, writes bench/results.json and
// regenerates docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// opts are the command line settings shared by the scenarios.
type opts struct {
	bin      string
	images   string // directory the simulators serve at /images/
	tmp      string
	results  string
	doc      string
	sizes    []int // apply N creates
	sizes100 []int // apply N creates at R = 100
	pacingN  int   // creates of each pacing scenario
	pacingR  []float64
	pacingB  []int
	plans    []int // plan over N fleet devices
	foreign  int
	rebuildN int
	serialN  int
	tfN      int
	refreshN int
	only     map[string]bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	o, report, err := parseOpts(args)
	if err != nil {
		return err
	}
	if report != "" {
		return rereport(report, o.doc)
	}
	if o.bin, err = filepath.Abs(o.bin); err != nil {
		return err
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("%s: %w (run make build first)", o.bin, err)
	}
	if o.tmp, err = os.MkdirTemp("", "lkfleet-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(o.tmp)
	o.images = mkdir(o.tmp, "images")
	if err := writeImages(o.images); err != nil {
		return err
	}

	res := &results{Machine: describeMachine(), Params: params{R: rateR, B: burstB, TS: provT.Seconds(), DeprovS: deprovT.Seconds()}}
	start := time.Now()
	step := func(name string) { fmt.Fprintf(os.Stderr, "[%5.1fs] %s\n", time.Since(start).Seconds(), name) }

	for _, scenarios := range []func(context.Context, opts, *results, func(string)) error{applies, pacing, plansAndRebuild} {
		if err := scenarios(ctx, o, res, step); err != nil {
			return err
		}
	}
	if o.only["ref"] {
		if err := references(ctx, o, res, step); err != nil {
			return err
		}
	}
	res.TotalS = time.Since(start).Seconds()
	res.Machine.LoadEnd = loadAvg()
	res.judge()

	printTable(os.Stdout, res)
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.results, append(data, '\n'), 0o644); err != nil {
		return err
	}
	if o.doc != "" {
		if err := writeDoc(o.doc, res); err != nil {
			return err
		}
	}
	if err := batchScenario(ctx, o, step); err != nil { // bench/batch.go
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s and %s in %.0fs\n", o.results, o.doc, res.TotalS)
	return nil
}

// parseOpts reads the command line; report is the results file to judge
// again instead of measuring ("" to measure).
func parseOpts(args []string) (o opts, report string, err error) {
	var sizes, plans, only string
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.bin, "bin", "bin/lkfleet", "the lkfleet binary to measure")
	fs.StringVar(&o.results, "results", "bench/results.json", "where to write the JSON results")
	fs.StringVar(&o.doc, "doc", "docs/benchmarks.md", "where to write the report (empty: do not)")
	var sizes100 string
	fs.StringVar(&sizes, "apply", "100,1000,10000", "apply N creates for these N")
	fs.StringVar(&sizes100, "apply-r100", "10000", "apply N creates for these N on a simulator allowing R = 100/s")
	fs.IntVar(&o.pacingN, "pacing-n", 300, "creates of each pacing scenario (R × B the client is not told)")
	var pr, pb string
	fs.StringVar(&pr, "pacing-r", "5,20,200", "rate limits R of the pacing scenarios")
	fs.StringVar(&pb, "pacing-b", "1,2,5,20", "bursts B of the pacing scenarios")
	fs.StringVar(&plans, "plan", "1000,10000,100000", "plan over these numbers of fleet devices")
	fs.IntVar(&o.foreign, "foreign", 10000, "foreign devices next to the fleet in the plan scenarios")
	fs.IntVar(&o.rebuildN, "rebuild", 1000, "devices rebuilt by reboot in the nightly rebuild")
	fs.IntVar(&o.serialN, "serial-n", 30, "devices of the one-at-a-time reference")
	fs.IntVar(&o.tfN, "tf-n", 100, "devices of the Terraform-style apply reference")
	fs.IntVar(&o.refreshN, "refresh-n", 1000, "devices of the Terraform-style refresh reference")
	fs.StringVar(&only, "only", "apply,pacing,plan,rebuild,ref", "scenarios to run")
	fs.StringVar(&report, "report", "", "measure nothing: judge the results in this JSON file again, print them and write the report")
	if err := fs.Parse(args); err != nil {
		return o, "", err
	}
	if o.sizes, err = ints(sizes); err != nil {
		return o, "", err
	}
	if o.plans, err = ints(plans); err != nil {
		return o, "", err
	}
	if o.sizes100, err = ints(sizes100); err != nil {
		return o, "", err
	}
	if o.pacingB, err = ints(pb); err != nil {
		return o, "", err
	}
	rs, err := ints(pr)
	if err != nil {
		return o, "", err
	}
	for _, r := range rs {
		o.pacingR = append(o.pacingR, float64(r))
	}
	o.only = map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		o.only[strings.TrimSpace(s)] = true
	}
	return o, report, nil
}

// applies runs the apply scenarios (at R = 50, then at R = 100).
func applies(ctx context.Context, o opts, res *results, step func(string)) error {
	if o.only["apply"] {
		for _, n := range o.sizes {
			step(fmt.Sprintf("apply %d creates", n))
			r, err := benchApply(ctx, o, n)
			if err != nil {
				return fmt.Errorf("apply %d: %w", n, err)
			}
			res.Apply = append(res.Apply, r)
		}
	}
	if o.only["apply"] {
		lim := limits{R: 100, B: burstB, T: provT}
		for _, n := range o.sizes100 {
			step(fmt.Sprintf("apply %d creates at R = %g", n, lim.R))
			r, err := benchApplyWith(ctx, o, n, lim)
			if err != nil {
				return fmt.Errorf("apply %d at R = %g: %w", n, lim.R, err)
			}
			res.Apply100 = append(res.Apply100, r)
		}
	}
	return nil
}

// pacing runs the creates against limits the client is not told.
func pacing(ctx context.Context, o opts, res *results, step func(string)) error {
	if o.only["pacing"] {
		for _, r := range o.pacingR {
			for _, b := range o.pacingB {
				lim := limits{R: r, B: b, T: provT}
				step(fmt.Sprintf("pacing: apply %d creates, R = %g, B = %d (not told)", o.pacingN, r, b))
				a, err := benchApplyWith(ctx, o, o.pacingN, lim)
				if err != nil {
					return fmt.Errorf("pacing R = %g B = %d: %w", r, b, err)
				}
				res.Pacing = append(res.Pacing, a)
			}
		}
	}
	return nil
}

// plansAndRebuild seeds fleets and plans over them; the nightly rebuild
// reuses the bed of its size.
func plansAndRebuild(ctx context.Context, o opts, res *results, step func(string)) error {
	if o.only["plan"] || o.only["rebuild"] {
		sizes := o.plans
		if !o.only["plan"] {
			sizes = nil
		}
		if o.only["rebuild"] && !containsInt(sizes, o.rebuildN) {
			sizes = append(sizes, o.rebuildN)
		}
		for _, n := range sizes {
			step(fmt.Sprintf("seed %d fleet + %d foreign devices, plan", n, o.foreign))
			b, err := seededBed(ctx, o, "plan-"+strconv.Itoa(n), n, o.foreign)
			if err != nil {
				return fmt.Errorf("plan %d: %w", n, err)
			}
			pr, err := benchPlan(ctx, b, n, o.foreign)
			if err == nil && o.only["plan"] && containsInt(o.plans, n) {
				res.Plan = append(res.Plan, pr)
			}
			if err == nil && o.only["rebuild"] && n == o.rebuildN {
				settle()
				step(fmt.Sprintf("nightly rebuild of %d devices", n))
				var rr rebuildResult
				rr, err = benchRebuild(ctx, b, n)
				res.Rebuild = &rr
			}
			b.close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// references runs the reference strategies, each on its own simulator and
// at the same time (they spend nearly all their time waiting), and pairs
// each with lkfleet's figure for the same job and size.
func references(ctx context.Context, o opts, res *results, step func(string)) error {
	lk := map[int]float64{}
	for _, a := range res.Apply {
		lk[a.N] = a.WallS
	}
	for _, n := range []int{o.serialN, o.tfN} {
		if _, ok := lk[n]; !ok {
			step(fmt.Sprintf("apply %d creates (for the references)", n))
			r, err := benchApply(ctx, o, n)
			if err != nil {
				return fmt.Errorf("apply %d: %w", n, err)
			}
			lk[n] = r.WallS
			res.ApplyExtra = append(res.ApplyExtra, r)
		}
	}
	planWall := 0.0
	for _, p := range res.Plan {
		if p.Fleet == o.refreshN {
			planWall = p.WallS
		}
	}
	if planWall == 0 {
		step(fmt.Sprintf("plan over %d devices (for the references)", o.refreshN))
		b, err := seededBed(ctx, o, "plan-ref", o.refreshN, 0)
		if err != nil {
			return err
		}
		pr, err := benchPlan(ctx, b, o.refreshN, 0)
		b.close()
		if err != nil {
			return err
		}
		planWall = pr.WallS
	}
	step(fmt.Sprintf("references: one at a time (%d), Terraform-style apply (%d) and refresh (%d, storming and well paced), concurrently", o.serialN, o.tfN, o.refreshN))
	refs := make([]refResult, 4)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { refs[0], err = refSerial(gctx, o, o.serialN); return })
	g.Go(func() (err error) { refs[1], err = refTerraform(gctx, o, o.tfN, 0, false); return })
	g.Go(func() (err error) { refs[2], err = refTerraform(gctx, o, o.refreshN, o.refreshN, false); return })
	g.Go(func() (err error) { refs[3], err = refTerraform(gctx, o, o.refreshN, o.refreshN, true); return })
	if err := g.Wait(); err != nil {
		return err
	}
	for i, w := range []float64{lk[o.serialN], lk[o.tfN], planWall, planWall} {
		refs[i].LkfleetWallS = w
		refs[i].Ratio = w / refs[i].WallS
		refs[i].Speedup = refs[i].WallS / w
	}
	res.References = refs
	return nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("size %q: %w", f, err)
		}
		out = append(out, n)
	}
	return out, nil
}

func containsInt(s []int, n int) bool {
	for _, x := range s {
		if x == n {
			return true
		}
	}
	return false
}

// rereport judges saved results again and rewrites the report from them,
// so a change to the judging or the report needs no new measurement.
func rereport(path, doc string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res results
	if err := json.Unmarshal(data, &res); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	res.Targets = nil
	res.judge()
	printTable(os.Stdout, &res)
	if doc == "" {
		return nil
	}
	if err := writeDoc(doc, &res); err != nil {
		return err
	}
	// The batch section comes from its own file (bench/batch.go); without
	// it a re-report would drop the section the measuring run wrote.
	data, err = os.ReadFile(filepath.Join(filepath.Dir(path), "batch.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	var br batchRun
	if err := json.Unmarshal(data, &br); err != nil {
		return fmt.Errorf("read batch.json next to %s: %w", path, err)
	}
	return writeBatchSection(doc, br)
}
