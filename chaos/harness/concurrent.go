package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// ConcurrentConfig configures one concurrent-apply trial: several applies
// of one fleet started at once (the last one Late after the others) as
// subprocesses of the built binary against one faulty simulator, while
// the simulator's devices are sampled directly.
type ConcurrentConfig struct {
	// Dir is the trial's scratch directory; Bin the lkfleet binary.
	Dir, Bin string
	// Count is devices per group and zone: the fleet has 6×Count devices.
	Count int
	// Applies is how many applies run (at least 2); the last one starts
	// Late after the others (0: all at once).
	Applies int
	Late    time.Duration
	// LockTimeout is every apply's --lock-timeout: long enough, and the
	// applies wait for each other and all exit 0; 0, and all but the
	// lease's holder exit 1 at once naming it, having changed nothing.
	LockTimeout time.Duration
	// Foreign is how many devices the fleet does not own are seeded.
	Foreign int
	// Seed, the fault rates, ListLag and ProvisionTime configure the
	// simulator as in ChaosConfig; Poll is apply's --poll-interval.
	Seed                                              uint64
	FaultRate, AmbiguousCreateRate, FailProvisionRate float64
	ListLag, ProvisionTime, Poll                      time.Duration
	// ExtraArgs are added to every concurrent apply's arguments.
	ExtraArgs []string
	// Every is the sampling interval (default 2 ms).
	Every time.Duration
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

// ConcurrentResult is what one concurrent-apply trial measured.
type ConcurrentResult struct {
	// Name says how many applies ran, how and with what --lock-timeout.
	Name    string
	Devices int
	// Codes are the concurrent applies' exit codes in start order; Refused
	// how many of them exited 1 because the fleet was locked, Waited how
	// many said they were waiting for the lease.
	Codes           []int
	Refused, Waited int
	// FollowUp is true when a further apply was needed to converge (a
	// device failed after its retry in every concurrent apply).
	FollowUp bool
	// PeakLive is the most live devices (see Live) one slot held in any
	// sample; Worst which slot and devices; Samples how many were taken.
	PeakLive int
	Worst    string
	Samples  int
	// Creates counts the simulator's creates; ExtraCreates those beyond
	// the slots and the failed provisions' replacements.
	Creates, ExtraCreates int
	// Duplicates and Empty are counted after every apply ended, after
	// the list lag, in a direct listing.
	Duplicates, Empty int
	ForeignChanged    []string
	// PlanCode is the final `plan --detailed-exitcode`.
	PlanCode int
	Faults   map[string]int
	Took     time.Duration
	Problems []string
}

// proc is one lkfleet subprocess of a trial.
type proc struct {
	cmd      *exec.Cmd
	out, err bytes.Buffer
	door     *door
	code     int
	// atExit lists what the simulator showed wrong the moment an apply
	// that exited 0 ended (nil: converged).
	atExit []string
}

// startProc starts bin with args and env; cancelling ctx sends SIGINT,
// as the Subprocess runner does.
func startProc(ctx context.Context, bin string, env map[string]string, args ...string) (*proc, error) {
	p := &proc{cmd: exec.CommandContext(ctx, bin, args...)}
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.err
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(os.Interrupt) }
	p.cmd.WaitDelay = 30 * time.Second
	return p, p.cmd.Start()
}

// wait waits for the process and records its exit code (-1: it could
// not be waited for or was killed).
func (p *proc) wait() {
	err := p.cmd.Wait()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		p.code = ee.ExitCode()
	} else if err != nil {
		p.err.WriteString(err.Error())
		p.code = -1
	}
}

// Concurrent runs one concurrent-apply trial and checks: no slot ever
// holds two live devices (sampled), each apply that exits 0 leaves the
// fleet converged at that moment, a refused apply exits 1 naming the
// holder and changed no device, and after all ended (plus one follow-up
// apply if failures required it) zero duplicates, zero empty slots, zero
// foreign changes and `plan --detailed-exitcode` 0.
func Concurrent(ctx context.Context, cfg ConcurrentConfig) (ConcurrentResult, error) {
	start := time.Now()
	if cfg.Every <= 0 {
		cfg.Every = 2 * time.Millisecond
	}
	res := ConcurrentResult{Devices: 6 * cfg.Count, PlanCode: -1}
	res.Name = fmt.Sprintf("%d applies of %d devices", cfg.Applies, res.Devices)
	if cfg.Late > 0 {
		res.Name += fmt.Sprintf(", the last %s later", cfg.Late)
	}
	res.Name += fmt.Sprintf(", --lock-timeout %s", cfg.LockTimeout)
	lab, err := NewLab(LabConfig{Dir: cfg.Dir, Sim: packetsim.Config{
		Seed: cfg.Seed, FaultRate: cfg.FaultRate, AmbiguousCreateRate: cfg.AmbiguousCreateRate,
		FailProvisionRate: cfg.FailProvisionRate, ListLag: cfg.ListLag,
		ProvisionTime: cfg.ProvisionTime, DeprovisionTime: cfg.ProvisionTime / 2,
	}})
	if err != nil {
		return res, err
	}
	defer lab.Close()
	seeded, err := lab.SeedForeign(ctx, cfg.Foreign)
	if err != nil {
		return res, err
	}
	if err := lab.WriteFleet("v1", cfg.Count); err != nil {
		return res, err
	}
	desired := DesiredSlots(cfg.Count)
	sampler := SampleLive(lab.Sim, "chaos", cfg.Every)
	procs, err := lab.runConcurrent(ctx, cfg, desired)
	res.PeakLive, res.Worst, res.Samples = sampler.Stop()
	if err != nil {
		return res, err
	}
	if res.PeakLive > 1 {
		res.Problems = append(res.Problems, fmt.Sprintf("a slot held %d live devices at once (%s)", res.PeakLive, res.Worst))
	}
	lab.checkCodes(&res, cfg, procs)
	if err := lab.checkAfter(ctx, &res, cfg, desired, seeded); err != nil {
		return res, err
	}
	res.Took = time.Since(start)
	return res, nil
}

// runConcurrent starts the trial's applies, each through its own door,
// and waits for all of them. The moment one exits 0 the simulator's
// devices are checked: the fleet must be converged then.
func (l *Lab) runConcurrent(ctx context.Context, cfg ConcurrentConfig, desired []string) ([]*proc, error) {
	args := append(l.ApplyArgs(cfg.Poll), "--lock-timeout", cfg.LockTimeout.String(), "--timeout", "5m")
	args = append(args, cfg.ExtraArgs...)
	procs := make([]*proc, cfg.Applies)
	var wg sync.WaitGroup
	var startErr error
	var mu sync.Mutex
	for i := range procs {
		d, err := l.openDoor()
		if err != nil {
			return nil, err
		}
		defer d.close()
		wg.Go(func() {
			if i == cfg.Applies-1 && cfg.Late > 0 {
				select {
				case <-time.After(cfg.Late):
				case <-ctx.Done():
				}
			}
			p, err := startProc(ctx, cfg.Bin, d.env(l), args...)
			p.door = d
			mu.Lock()
			procs[i] = p
			if err != nil {
				startErr = err
			}
			mu.Unlock()
			if err != nil {
				return
			}
			p.wait()
			if p.code == 0 {
				p.atExit = snapshotConverged(l.Sim().Devices(), "chaos", desired)
			}
		})
	}
	wg.Wait()
	return procs, startErr
}

// snapshotConverged lists what keeps a simulator snapshot from holding
// exactly one active, not deleted device of fleet in each desired slot
// and none elsewhere.
func snapshotConverged(devs []packetsim.DeviceSnapshot, fleet string, desired []string) []string {
	per := map[string][]packetsim.DeviceSnapshot{}
	for _, d := range devs {
		if snapTag(d, "lkfleet:fleet") == fleet && !d.Deleted {
			per[snapTag(d, "lkfleet:slot")] = append(per[snapTag(d, "lkfleet:slot")], d)
		}
	}
	var problems []string
	want := map[string]bool{}
	for _, slot := range desired {
		want[slot] = true
		switch ds := per[slot]; {
		case len(ds) != 1:
			problems = append(problems, fmt.Sprintf("slot %s: %d devices", slot, len(ds)))
		case ds[0].State != "active":
			problems = append(problems, fmt.Sprintf("slot %s: device %s is %s", slot, ds[0].ID, ds[0].State))
		}
	}
	for slot, ds := range per {
		if !want[slot] {
			problems = append(problems, fmt.Sprintf("slot %s: %d devices not desired", slot, len(ds)))
		}
	}
	return problems
}
