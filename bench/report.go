package main

import (
	"bufio"
	_ "embed"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
)

// results is everything one bench run measured (bench/results.json).
type results struct {
	Machine    machine        `json:"machine"`
	Params     params         `json:"params"`
	Apply      []applyResult  `json:"apply"`
	Apply100   []applyResult  `json:"apply_r100,omitempty"`
	Pacing     []applyResult  `json:"pacing,omitempty"`
	ApplyExtra []applyResult  `json:"apply_for_references,omitempty"`
	Plan       []planResult   `json:"plan"`
	Rebuild    *rebuildResult `json:"rebuild,omitempty"`
	References []refResult    `json:"references"`
	Targets    []target       `json:"targets"`
	TotalS     float64        `json:"total_s"`
}

// params are the simulator's limits.
type params struct {
	R       float64 `json:"rate_limit_per_s"`
	B       int     `json:"burst"`
	TS      float64 `json:"provision_time_s"`
	DeprovS float64 `json:"deprovision_time_s"`
}

// machine is where the figures came from.
type machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Date      string `json:"date"`
	LoadStart string `json:"load_start"`
	LoadEnd   string `json:"load_end"`
}

func describeMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH,
		Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), LoadStart: loadAvg(), CPUModel: "unknown"}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// loadAvg is the 1, 5 and 15 minute load average: other work on the
// machine slows every figure.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// target is one DESIGN section 10 target and whether this run met it.
type target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// judge checks the measured figures against the targets.
func (r *results) judge() {
	add := func(name, want, got string, met bool) {
		r.Targets = append(r.Targets, target{name, want, got, met})
	}
	for _, a := range r.Apply {
		if a.N != 1000 {
			continue
		}
		add("apply 1,000: wall", "≤ 1.10 × bound", fmt.Sprintf("%.1fs = %.3f × %.1fs", a.WallS, a.Ratio, a.BoundS), a.Ratio <= 1.10)
		add("apply 1,000: 429s", "≤ 1% of requests", fmt.Sprintf("%d of %d (%.2f%%)", a.Throttled, a.Requests, a.ThrottledPct), a.ThrottledPct <= 1)
		add("apply 1,000: duplicates", "0, one create per device", fmt.Sprintf("%d duplicates, %d devices from %d create POSTs (%d refused 429)", a.Duplicates, a.Created, a.CreatePosts, a.CreatePosts-a.Created),
			a.Duplicates == 0 && a.Created == a.N)
		add("apply 1,000: converged", "plan after: no changes", fmt.Sprint(a.Converged), a.Converged)
	}
	for _, a := range append(append([]applyResult(nil), r.Apply...), r.Apply100...) {
		if a.N < 10000 {
			continue
		}
		name := fmt.Sprintf("apply %s at R = %g", thousands(a.N), a.R)
		add(name+": wall", "≤ 1.05 × request bound", fmt.Sprintf("%.1fs = %.3f × %.1fs", a.WallS, a.Ratio, a.BoundS), a.Ratio <= 1.05)
		add(name+": 429s", "≤ 1% of requests", fmt.Sprintf("%d of %d (%.2f%%)", a.Throttled, a.Requests, a.ThrottledPct), a.ThrottledPct <= 1)
		add(name+": duplicates", "0", fmt.Sprintf("%d duplicates, %d devices", a.Duplicates, a.Created), a.Duplicates == 0 && a.Created == a.N)
	}
	var cpu1k, cpu10k float64
	for _, a := range r.Apply {
		switch a.N {
		case 1000:
			cpu1k = a.CPUS / float64(a.N)
		case 10000:
			cpu10k = a.CPUS / float64(a.N)
		}
	}
	if cpu1k > 0 && cpu10k > 0 {
		add("apply CPU per device, 1,000 → 10,000", "≤ 1 ms, flat", fmt.Sprintf("%.2f ms → %.2f ms", 1000*cpu1k, 1000*cpu10k), cpu10k <= 0.001 && cpu10k <= 1.25*cpu1k)
	}
	for _, a := range r.allApplies() {
		// "~5 %": the listings' share of R while calls are being sent.
		add(fmt.Sprintf("waiting for %d devices (R = %g, B = %d)", a.N, a.R, a.B), "≤ ~5 % of the budget while calls go out, no GET per device",
			fmt.Sprintf("%.1f %% while calling, %.1f %% overall (%d listing requests), %d device GETs", 100*a.Wait.CallShare, 100*a.Wait.BudgetShare, a.Wait.WaitListings, a.Wait.GetsPerDeviceCalls),
			a.Wait.CallShare <= 0.06 && a.Wait.GetsPerDeviceCalls == 0)
	}
	for _, a := range r.Pacing {
		want, limit := "≤ 1.10 × request bound, ≤ 1 % 429s", 1.10
		if a.B == 1 {
			want, limit = "≤ 1.15 × request bound, ≤ 1 % 429s", 1.15
		}
		add(fmt.Sprintf("pacing N=%d, R=%g, B=%d (not told)", a.N, a.R, a.B), want,
			fmt.Sprintf("%.2fs = %.3f × %.2fs, %d of %d 429", a.WallS, a.Ratio, a.BoundS, a.Throttled, a.Requests), a.Ratio <= limit && a.ThrottledPct <= 1)
	}
	for _, p := range r.Plan {
		switch p.Fleet {
		case 10000:
			add("plan 10,000: requests", fmt.Sprintf("≤ %d", p.Limit), fmt.Sprint(p.Requests), p.Requests <= p.Limit)
			add("plan 10,000: CPU", "< 1 s", fmt.Sprintf("%.2fs", p.CPUS), p.CPUS < 1)
			add("plan 10,000: peak RSS", "< 200 MiB", fmt.Sprintf("%.0f MiB", p.MaxRSSMiB), p.MaxRSSMiB < 200)
		case 100000:
			add("plan 100,000: requests", fmt.Sprintf("≤ %d", p.Limit), fmt.Sprint(p.Requests), p.Requests <= p.Limit)
			add("plan 100,000: CPU", "≤ 3 s", fmt.Sprintf("%.2fs", p.CPUS), p.CPUS <= 3)
			add("plan 100,000: peak RSS", "≤ 300 MiB", fmt.Sprintf("%.0f MiB", p.MaxRSSMiB), p.MaxRSSMiB <= 300)
		}
	}
	if b := r.Rebuild; b != nil {
		add(fmt.Sprintf("rebuild %d: wall", b.N), "≤ 1.10 × bound", fmt.Sprintf("%.1fs = %.3f × %.1fs", b.WallS, b.Ratio, b.BoundS), b.Ratio <= 1.10)
		// A call refused with 429 had no effect and is sent again: it
		// counts as a request, not as an extra call.
		add(fmt.Sprintf("rebuild %d: requests", b.N), "≈ 2 per device + listings", fmt.Sprintf("%d PUT + %d reboot (%d refused 429 and re-sent) + %d listings + %d other; %d booted again", b.Puts, b.Reboots, b.Throttled, b.Listings, b.Requests-b.Puts-b.Reboots-b.Listings, b.Booted),
			b.Puts >= b.N && b.Reboots >= b.N && b.Puts+b.Reboots <= 2*b.N+b.Throttled && b.Booted == b.N)
	}
	if r.TotalS > 0 {
		add("make bench", "< 20 min", fmt.Sprintf("%.0fs (bench program)", r.TotalS), r.TotalS < 1200)
	}
}

// allApplies returns every apply run: at R = 50, at R = 100 and the
// pacing matrix.
func (r *results) allApplies() []applyResult {
	out := append(append([]applyResult(nil), r.Apply...), r.Apply100...)
	return append(out, r.Pacing...)
}

// thousands writes n with comma separators.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// printTable prints the figures as aligned tables.
func printTable(w io.Writer, r *results) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "Simulator: R = %.0f req/s, B = %d, T = %.0fs.  Machine: %d × %s, %s, load %s → %s\n\n",
		r.Params.R, r.Params.B, r.Params.TS, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.LoadStart, r.Machine.LoadEnd)
	if all := r.allApplies(); len(all) > 0 {
		fmt.Fprintln(w, "apply N creates (request bound = (N−B)/R + T: B requests at once, the rest at R/s, the last device provisioning T)")
		fmt.Fprintln(tw, "N\tR\tB\twall\tbound\tratio\trequests\t429s\tpeak in flight\tduplicates\tCPU\tCPU/device\tRSS\t")
		for _, a := range append(all, r.ApplyExtra...) {
			fmt.Fprintf(tw, "%d\t%g\t%d\t%.2fs\t%.2fs\t%.3f\t%d\t%d\t%d\t%d\t%.2fs\t%.2f ms\t%.0f MiB\t\n", a.N, a.R, a.B, a.WallS, a.BoundS, a.Ratio, a.Requests, a.Throttled, a.PeakInFlight, a.Duplicates, a.CPUS, 1000*a.CPUS/float64(a.N), a.MaxRSSMiB)
		}
		tw.Flush()
		fmt.Fprintln(w, "\nwait cost while N devices provision (share = listing requests / (R × span))")
		fmt.Fprintln(tw, "N\tR\tB\twait listings\tover\tshare while calling\tshare overall\tlistings/s\tdevice GETs\t")
		for _, a := range all {
			x := a.Wait
			fmt.Fprintf(tw, "%d\t%g\t%d\t%d\t%.1fs\t%.1f %%\t%.1f %%\t%.3f\t%d\t\n", x.N, a.R, a.B, x.WaitListings, x.WaitSpanS, 100*x.CallShare, 100*x.BudgetShare, x.ListingsPerSecond, x.GetsPerDeviceCalls)
		}
		tw.Flush()
	}
	if len(r.Plan) > 0 {
		fmt.Fprintln(w, "\nplan over N fleet devices (+ foreign devices), no changes")
		fmt.Fprintln(tw, "fleet\tforeign\trequests\tlimit\twall\tCPU\tpeak RSS\t")
		for _, p := range r.Plan {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.2fs\t%.2fs\t%.0f MiB\t\n", p.Fleet, p.Foreign, p.Requests, p.Limit, p.WallS, p.CPUS, p.MaxRSSMiB)
		}
		tw.Flush()
	}
	if b := r.Rebuild; b != nil {
		fmt.Fprintln(w, "\nnightly rebuild by reboot (bound = (2N−B)/R + T/5)")
		fmt.Fprintln(tw, "N\twall\tbound\tratio\trequests\tper device\tPUT\treboot\tlistings\t429s\tbooted again\t")
		fmt.Fprintf(tw, "%d\t%.2fs\t%.2fs\t%.3f\t%d\t%.2f\t%d\t%d\t%d\t%d\t%d\t\n", b.N, b.WallS, b.BoundS, b.Ratio, b.Requests, b.PerDevice, b.Puts, b.Reboots, b.Listings, b.Throttled, b.Booted)
		tw.Flush()
	}
	if len(r.References) > 0 {
		fmt.Fprintln(w, "\nreference strategies (models of what people run instead, same simulator)")
		fmt.Fprintln(tw, "strategy\tN\twall\trequests\t429s\tlkfleet wall\tlkfleet/ref\tspeedup\t")
		for _, x := range r.References {
			fmt.Fprintf(tw, "%s\t%d\t%.1fs\t%d\t%d\t%.2fs\t%.3f\t%.1f×\t\n", x.Name, x.N, x.WallS, x.Requests, x.Throttled, x.LkfleetWallS, x.Ratio, x.Speedup)
		}
		tw.Flush()
		for _, x := range r.References {
			fmt.Fprintf(w, "  %s: %s\n", x.Name, x.Model)
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\ntargets")
		tw2 := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range r.Targets {
			mark := "met"
			if !t.Met {
				mark = "MISSED"
			}
			fmt.Fprintf(tw2, "%s\t%s\t%s\t%s\n", mark, t.Name, t.Want, t.Got)
		}
		tw2.Flush()
	}
}

//go:embed benchmarks.md.tmpl
var docTemplate string

// writeDoc renders docs/benchmarks.md from the results.
func writeDoc(path string, r *results) error {
	var table strings.Builder
	printTable(&table, r)
	t, err := template.New("doc").Funcs(template.FuncMap{
		"f1":           func(v float64) string { return fmt.Sprintf("%.1f", v) },
		"f2":           func(v float64) string { return fmt.Sprintf("%.2f", v) },
		"f3":           func(v float64) string { return fmt.Sprintf("%.3f", v) },
		"f0":           func(v float64) string { return fmt.Sprintf("%.0f", v) },
		"idealCreates": func(n int) float64 { return float64(max(n-burstB, 0)) / rateR },
		"idealRebuild": func(n int) float64 { return float64(max(2*n-burstB, 0)) / rateR },
		"perDevice":    func(x refResult) float64 { return x.WallS / float64(x.N) },
		"thousand":     func(x refResult) float64 { return 1000 * x.WallS / float64(x.N) },
		"perRound":     func(x refResult) float64 { return x.WallS / float64((x.N+tfParallelism-1)/tfParallelism) },
		"tfThousand": func(x refResult) float64 {
			return 1000 / tfParallelism * x.WallS / float64((x.N+tfParallelism-1)/tfParallelism)
		},
		"minutes": func(s float64) float64 { return s / 60 },
		"cpums":   func(a applyResult) float64 { return 1000 * a.CPUS / float64(max(a.N, 1)) },
	}).Parse(docTemplate)
	if err != nil {
		return fmt.Errorf("report template: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := t.Execute(f, struct {
		R     *results
		Table string
	}{r, table.String()}); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
