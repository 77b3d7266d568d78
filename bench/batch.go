package main

// The batch-create scenario: `lkfleet apply` of N creates with
// rollout.create_batch, against its own bound. It keeps its results in a
// file of its own (batch.json next to results.json) and its section of
// docs/benchmarks.md between markers, so the rest of the benchmark does
// not need to know it.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The scenario's size: N creates in batches of batchSize (the simulator's
// cap), at the benchmark's R, B and T.
const (
	batchN     = 1000
	batchSize  = 100
	routeBatch = "POST /projects/{id}/devices/batch"
)

// batchRun is one apply of batchN creates through batch requests.
type batchRun struct {
	N            int            `json:"n"`
	BatchSize    int            `json:"batch_size"`
	WallS        float64        `json:"wall_s"`
	BoundS       float64        `json:"bound_s"`
	Ratio        float64        `json:"ratio"`
	SingleBoundS float64        `json:"one_request_per_device_bound_s"`
	Requests     int            `json:"requests"`
	BatchPosts   int            `json:"batch_posts"`
	CreatePosts  int            `json:"create_posts"`
	Created      int            `json:"devices_created"`
	Throttled    int            `json:"throttled_429"`
	Duplicates   int            `json:"duplicates"`
	CPUS         float64        `json:"cpu_s"`
	Converged    bool           `json:"converged"`
	ByRoute      map[string]int `json:"requests_by_route"`
}

// batchBound is the earliest n creates in batches of size can be done: one
// request per batch, the first B at once and the rest at R/s, then the
// last device provisions for T. (With one request per device it is
// createBound.)
func batchBound(n, size int) time.Duration {
	reqs := (n + size - 1) / size
	return time.Duration(float64(max(reqs-burstB, 0))/rateR*float64(time.Second)) + provT
}

// batchScenario runs the scenario with `-only batch` (and with apply, so
// `make bench` shows both modes), writes batch.json and its section of
// the report.
func batchScenario(ctx context.Context, o opts, step func(string)) error {
	if !o.only["batch"] && !o.only["apply"] {
		return nil
	}
	step(fmt.Sprintf("apply %d creates in batches of %d", batchN, batchSize))
	r, err := benchBatch(ctx, o, batchN, batchSize)
	if err != nil {
		return fmt.Errorf("batch apply %d: %w", batchN, err)
	}
	fmt.Printf("batch creates: %d devices in %d batch requests (+%d single), %.1f s against a bound of %.1f s (%.2f×; one request per device: %.1f s), %d duplicates, converged %v\n",
		r.Created, r.BatchPosts, r.CreatePosts, r.WallS, r.BoundS, r.Ratio, r.SingleBoundS, r.Duplicates, r.Converged)
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(o.results), "batch.json"), append(data, '\n'), 0o644); err != nil {
		return err
	}
	if o.doc == "" {
		return nil
	}
	return writeBatchSection(o.doc, r)
}

func benchBatch(ctx context.Context, o opts, n, size int) (batchRun, error) {
	b, err := newBed(o.bin, mkdir(o.tmp, fmt.Sprintf("batch-%d", n)), o.images, n)
	if err != nil {
		return batchRun{}, err
	}
	defer b.close()
	fleet, err := os.ReadFile(b.fleet)
	if err != nil {
		return batchRun{}, err
	}
	fleet = fmt.Appendf(fleet, "  create_batch: %d\n", size)
	if err := os.WriteFile(b.fleet, fleet, 0o644); err != nil {
		return batchRun{}, err
	}
	ap, err := b.must(ctx, 0, "apply", "-f", b.fleet, "--auto-approve", "-o", "plain")
	if err != nil {
		return batchRun{}, err
	}
	settle()
	after, err := b.cli(ctx, "plan", "-f", b.fleet, "--detailed-exitcode")
	if err != nil {
		return batchRun{}, err
	}
	st, bound := ap.Stats, batchBound(n, size)
	return batchRun{
		N: n, BatchSize: size, WallS: ap.Wall.Seconds(), BoundS: bound.Seconds(), Ratio: ap.Wall.Seconds() / bound.Seconds(),
		SingleBoundS: createBound(n).Seconds(),
		Requests:     st.Total, BatchPosts: st.Requests[routeBatch], CreatePosts: st.Requests[routeCreate], Created: st.Creates,
		Throttled: st.Throttled, Duplicates: st.Duplicates, CPUS: ap.CPU.Seconds(), Converged: after.Exit == 0,
		ByRoute: st.Requests,
	}, nil
}

// The scenario's section of the report sits between these markers; it is
// replaced in place, or added at the end.
const (
	batchBegin = "<!-- batch-creates: written by bench/batch.go -->"
	batchEnd   = "<!-- /batch-creates -->"
)

func writeBatchSection(path string, r batchRun) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sec := fmt.Sprintf(`%s
## Batch creates (rollout.create_batch)

One apply of %d creates with `+"`create_batch: %d`"+` (one wave, R = %d/s, B = %d, T = %.0f s). The bound
is one request per batch: ceil(N/%d) = %d requests, the first B at once and the rest at R/s, then
the last device provisions for T, so **%.1f s**; the same creates one request per device have the
bound (N−B)/R+T = %.1f s.

| N | batch | wall | bound | ratio | batch requests | single creates | all requests | 429s | duplicates | CPU | converged |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| %d | %d | %.1f s | %.1f s | %.2f× | %d | %d | %d | %d | %d | %.2f s | %v |

The gap to the bound is what the bound leaves out: planning (catalogue, capacity check, the first
listing), the listings while waiting, and up to one poll interval before the last device is seen.
One run; `+"`go run ./bench -only batch`"+` repeats it (results in bench/batch.json). Batching is off by
default (`+"`create_batch: 0`"+`) until the service's limits for it are known; see docs/executor.md.
%s
`, batchBegin, r.N, r.BatchSize, rateR, burstB, provT.Seconds(), r.BatchSize, (r.N+r.BatchSize-1)/r.BatchSize,
		r.BoundS, r.SingleBoundS, r.N, r.BatchSize, r.WallS, r.BoundS, r.Ratio, r.BatchPosts, r.CreatePosts,
		r.Requests, r.Throttled, r.Duplicates, r.CPUS, r.Converged, batchEnd)
	s := string(doc)
	if i, j := strings.Index(s, batchBegin), strings.Index(s, batchEnd); i >= 0 && j > i {
		s = s[:i] + strings.TrimSuffix(sec, "\n") + s[j+len(batchEnd):]
	} else {
		s = strings.TrimRight(s, "\n") + "\n\n" + sec
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
