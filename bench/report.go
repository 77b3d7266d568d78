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
	for _, a := range r.Apply {
		// 1% for the jitter of request arrival times.
		add(fmt.Sprintf("waiting for %d devices", a.N), "≤ 1 listing/s, no GET per device", fmt.Sprintf("%.3f listings/s (%d listings, closest %.3fs apart), %d device GETs", a.Wait.ListingsPerSecond, a.Wait.WaitListings, a.Wait.MinGapS, a.Wait.GetsPerDeviceCalls),
			a.Wait.ListingsPerSecond <= 1.01 && a.Wait.GetsPerDeviceCalls == 0)
	}
	for _, p := range r.Plan {
		if p.Fleet != 10000 {
			continue
		}
		add("plan 10,000: requests", fmt.Sprintf("≤ %d", p.Limit), fmt.Sprint(p.Requests), p.Requests <= p.Limit)
		add("plan 10,000: CPU", "< 1 s", fmt.Sprintf("%.2fs", p.CPUS), p.CPUS < 1)
		add("plan 10,000: peak RSS", "< 200 MiB", fmt.Sprintf("%.0f MiB", p.MaxRSSMiB), p.MaxRSSMiB < 200)
	}
	if b := r.Rebuild; b != nil {
		add(fmt.Sprintf("rebuild %d: wall", b.N), "≤ 1.10 × bound", fmt.Sprintf("%.1fs = %.3f × %.1fs", b.WallS, b.Ratio, b.BoundS), b.Ratio <= 1.10)
		// A call refused with 429 had no effect and is sent again: it
		// counts as a request, not as an extra call.
		add(fmt.Sprintf("rebuild %d: requests", b.N), "≈ 2 per device + listings", fmt.Sprintf("%d PUT + %d reboot (%d refused 429 and re-sent) + %d listings + %d other; %d booted again", b.Puts, b.Reboots, b.Throttled, b.Listings, b.Requests-b.Puts-b.Reboots-b.Listings, b.Booted),
			b.Puts >= b.N && b.Reboots >= b.N && b.Puts+b.Reboots <= 2*b.N+b.Throttled && b.Booted == b.N)
	}
	if r.TotalS > 0 {
		add("make bench", "< 10 min", fmt.Sprintf("%.0fs (bench program)", r.TotalS), r.TotalS < 600)
	}
}

// printTable prints the figures as aligned tables.
func printTable(w io.Writer, r *results) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "Simulator: R = %.0f req/s, B = %d, T = %.0fs.  Machine: %d × %s, %s, load %s → %s\n\n",
		r.Params.R, r.Params.B, r.Params.TS, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.LoadStart, r.Machine.LoadEnd)
	if len(r.Apply) > 0 {
		fmt.Fprintln(w, "apply N creates (bound = (N−B)/R + T)")
		fmt.Fprintln(tw, "N\twall\tbound\tratio\trequests\t429s\tpeak in flight\tduplicates\tCPU\tRSS\t")
		for _, a := range append(append([]applyResult(nil), r.Apply...), r.ApplyExtra...) {
			fmt.Fprintf(tw, "%d\t%.2fs\t%.2fs\t%.3f\t%d\t%d\t%d\t%d\t%.2fs\t%.0f MiB\t\n", a.N, a.WallS, a.BoundS, a.Ratio, a.Requests, a.Throttled, a.PeakInFlight, a.Duplicates, a.CPUS, a.MaxRSSMiB)
		}
		tw.Flush()
		fmt.Fprintln(w, "\nwait cost while N devices provision")
		fmt.Fprintln(tw, "N\twait listings\tover\tlistings/s\tclosest gap\tdevice-minutes\tlistings/device-minute\tdevice GETs\t")
		for _, a := range r.Apply {
			x := a.Wait
			fmt.Fprintf(tw, "%d\t%d\t%.1fs\t%.3f\t%.3fs\t%.1f\t%.3f\t%d\t\n", x.N, x.WaitListings, x.WaitSpanS, x.ListingsPerSecond, x.MinGapS, x.DeviceMinutes, x.PerDeviceMinute, x.GetsPerDeviceCalls)
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
