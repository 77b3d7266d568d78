package harness

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// ChaosConfig is one chaos run.
type ChaosConfig struct {
	// Dir is the run's scratch directory.
	Dir string
	// Count is devices per group and zone: the fleet has 6×Count devices.
	Count int
	// Foreign is how many devices the fleet does not own are seeded.
	Foreign int
	// Seed makes the simulator's faults reproducible.
	Seed uint64
	// Faults: the rates of DESIGN section 10.
	FaultRate, AmbiguousCreateRate, FailProvisionRate float64
	// ListLag hides new devices from listings this long.
	ListLag time.Duration
	// ProvisionTime is how long a device takes to become active.
	ProvisionTime time.Duration
	// Poll is apply's --poll-interval.
	Poll time.Duration
	// MaxApplies bounds the applies allowed to converge (DESIGN: 2).
	MaxApplies int
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
	// NetworkType, if set, gives the worker group a network type (Lab.NetworkType).
	NetworkType string
	// CreateBatch, if above 0, creates through batch requests of this size
	// (rollout.create_batch).
	CreateBatch int
}

// ChaosResult is what one chaos run measured.
type ChaosResult struct {
	Seed    uint64
	Devices int
	Foreign int
	// Applies is how many applies it took to converge (0: never did).
	Applies int
	// Codes are the exit codes of the applies in order, then the plan's.
	Codes []int
	// Faults are the simulator's injected faults by kind.
	Faults map[string]int
	// Creates counts devices the simulator created.
	Creates int
	// Duplicates is the simulator's count of extra devices per slot; Listed
	// the same counted in a direct listing.
	Duplicates, ListedDuplicates int
	// ForeignChanged lists foreign devices changed or addressed.
	ForeignChanged []string
	// PlanCode is `plan --detailed-exitcode` after converging.
	PlanCode int
	// Took is the run's wall time.
	Took time.Duration
	// Requests are the simulator's API requests by route.
	Requests map[string]int
	// Problems lists every guarantee the run saw broken; empty is a pass.
	Problems []string
}

// Chaos applies a fleet of 6×Count devices to a simulator injecting the
// configured faults, with foreign devices seeded, and checks every
// guarantee. An error means the harness itself could not run.
func Chaos(ctx context.Context, cfg ChaosConfig, run Runner) (ChaosResult, error) {
	start := time.Now()
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if cfg.MaxApplies == 0 {
		cfg.MaxApplies = 2
	}
	res := ChaosResult{Seed: cfg.Seed, Devices: 6 * cfg.Count, Foreign: cfg.Foreign, PlanCode: -1}
	lab, err := NewLab(LabConfig{Dir: cfg.Dir, Sim: packetsim.Config{
		Seed:                cfg.Seed,
		FaultRate:           cfg.FaultRate,
		AmbiguousCreateRate: cfg.AmbiguousCreateRate,
		FailProvisionRate:   cfg.FailProvisionRate,
		ListLag:             cfg.ListLag,
		ProvisionTime:       cfg.ProvisionTime,
		DeprovisionTime:     cfg.ProvisionTime / 2,
	}})
	if err != nil {
		return res, err
	}
	defer lab.Close()
	lab.NetworkType = cfg.NetworkType
	lab.CreateBatch = cfg.CreateBatch
	seeded, err := lab.SeedForeign(ctx, cfg.Foreign)
	if err != nil {
		return res, err
	}
	if err := lab.WriteFleet("v1", cfg.Count); err != nil {
		return res, err
	}
	desired := DesiredSlots(cfg.Count)
	for i := 1; i <= cfg.MaxApplies; i++ {
		st, problems, err := lab.Apply(ctx, run, cfg.Poll, desired)
		if err != nil {
			return res, err
		}
		res.Codes = append(res.Codes, st.Code)
		res.Problems = append(res.Problems, problems...)
		logf("seed %d, %d devices: apply %d exited %d in %s (%s: %d added, %d failed)",
			cfg.Seed, res.Devices, i, st.Code, st.Took.Round(time.Millisecond), st.Summary.Result, st.Summary.Added, len(st.Summary.Failed))
		for _, f := range st.Summary.Failed {
			logf("  failed: %s (%s) %s: %s", f.Hostname, f.Slot, f.DeviceID, f.Reason)
		}
		if st.Summary.Halted != "" {
			logf("  halted: %s", st.Summary.Halted)
		}
		if st.Code != 0 {
			logf("  stderr: %s", lastLine(st.Stderr))
		}
		if st.Code == 0 {
			res.Applies = i
			break
		}
	}
	if res.Applies == 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("not converged after %d applies", cfg.MaxApplies))
	} else {
		p := lab.Plan(ctx, run)
		res.PlanCode = p.Code
		res.Codes = append(res.Codes, p.Code)
		if p.Code != 0 {
			res.Problems = append(res.Problems, fmt.Sprintf("plan --detailed-exitcode after converging exited %d: %s", p.Code, lastLine(p.Stdout+p.Stderr)))
		}
	}
	devs, err := lab.Listing(ctx)
	if err != nil {
		return res, err
	}
	_, res.ListedDuplicates = Converged(devs, desired)
	stats := lab.Sim().Stats()
	res.Faults = maps.Clone(stats.Faults)
	res.Creates = stats.Creates
	res.Requests = maps.Clone(stats.Requests)
	res.Duplicates = stats.Duplicates
	if res.Duplicates != 0 || res.ListedDuplicates != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("duplicates: simulator %d, listing %d", res.Duplicates, res.ListedDuplicates))
	}
	res.ForeignChanged, err = lab.ForeignChanges(ctx, seeded)
	if err != nil {
		return res, err
	}
	for _, c := range res.ForeignChanged {
		res.Problems = append(res.Problems, "foreign device "+c)
	}
	res.Took = time.Since(start)
	return res, nil
}
