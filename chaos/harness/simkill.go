package harness

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// SimKillConfig configures the simulator-kill trials: `lkfleet sim
// --state FILE` is killed with SIGKILL right after one of fleet A's
// creates was answered 201, restarted from the same file, and then fleet
// A is applied again and a second fleet B into the same project, and A
// destroyed.
type SimKillConfig struct {
	// Dir is the trials' scratch directory; Bin the lkfleet binary.
	Dir, Bin string
	// SimBin, if set, is the binary whose `sim` runs the simulator (to
	// measure another build's simulator against this client).
	SimBin string
	// Count is devices per group and zone of each fleet (6×Count each).
	Count int
	// Seed seeds the trials (kill points and simulator seeds); Trials is
	// how many (default 5).
	Seed   uint64
	Trials int
	// ListLag, ProvisionTime and Poll as in ChaosConfig; Down is how long
	// the simulator stays dead (default 500 ms).
	ListLag, ProvisionTime, Poll, Down time.Duration
	// Timeout is every apply's --timeout (default 90 s): no apply may wait
	// longer.
	Timeout time.Duration
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

// SimKillResult is one simulator-kill trial.
type SimKillResult struct {
	// Name says after which create the simulator was killed.
	Name string
	// Answered is how many of A's creates were answered 201 before the
	// kill; Lost how many of them were missing after the restart.
	Answered, Lost int
	// Codes: the apply the kill hit, A's re-run, B's apply and A's destroy.
	Codes []int
	// Longest is the longest any apply or destroy took.
	Longest time.Duration
	// Reused counts device ids answered for two different devices;
	// Shared ids in both fleets' listings.
	Reused, Shared int
	// Duplicates and Empty are over both fleets after they converged.
	Duplicates, Empty int
	// Touched lists B's and foreign devices that A's destroy addressed or
	// that changed; Left counts A's devices still listed after it.
	Touched []string
	Left    int
	Took    time.Duration
	// Problems lists every guarantee the trial saw broken.
	Problems []string
}

// fleetB is the second fleet's name: same groups, zones and slot names
// as A ("chaos"), so a mix-up of ids shows.
const fleetB = "second"

// SimKills runs the simulator-kill trials, each on a fresh simulator
// process and state file.
func SimKills(ctx context.Context, cfg SimKillConfig) ([]SimKillResult, error) {
	if cfg.Trials <= 0 {
		cfg.Trials = 5
	}
	if cfg.Down <= 0 {
		cfg.Down = 500 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 90 * time.Second
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 6))
	var out []SimKillResult
	for i := range cfg.Trials {
		seed := rng.Uint64()
		k := 1 + rng.IntN(6*cfg.Count-1) // A's creates: kill after the k-th
		dir := filepath.Join(cfg.Dir, fmt.Sprintf("trial-%d", i+1))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return out, err
		}
		r, err := simKill(ctx, cfg, dir, seed, k)
		if err != nil {
			return out, fmt.Errorf("simulator kill trial %d: %w", i+1, err)
		}
		logf("%s: answered %d, lost %d, codes %v, reused %d, shared %d, duplicates %d, empty %d, touched %d, left %d, %s",
			r.Name, r.Answered, r.Lost, r.Codes, r.Reused, r.Shared, r.Duplicates, r.Empty, len(r.Touched), r.Left, r.Took.Round(100*time.Millisecond))
		out = append(out, r)
	}
	return out, nil
}

// simTrial is one trial's simulator, fleet files and what it has seen.
type simTrial struct {
	cfg            SimKillConfig
	sim            *SimProcess
	fileA, fileB   string
	foreign        map[string]Device
	res            *SimKillResult
	desired        []string
	answeredBefore []Created
}

func simKill(ctx context.Context, cfg SimKillConfig, dir string, seed uint64, k int) (SimKillResult, error) {
	start := time.Now()
	res := SimKillResult{Name: fmt.Sprintf("sim seed %d, SIGKILL after A's create #%d", seed%1000, k)}
	sim, err := StartSimProcess(SimProcessConfig{
		Dir: dir, Bin: cmp.Or(cfg.SimBin, cfg.Bin), Project: fmt.Sprintf("5e0c7a1d-%04x-4000-8000-%012x", seed%0x10000, seed%0x1000000000000), Seed: seed,
		ListLag: cfg.ListLag, ProvisionTime: cfg.ProvisionTime, DeprovisionTime: cfg.ProvisionTime / 2,
	})
	if err != nil {
		return res, err
	}
	defer sim.Close()
	t := &simTrial{cfg: cfg, sim: sim, res: &res, desired: DesiredSlots(cfg.Count),
		fileA: filepath.Join(dir, "a.yml"), fileB: filepath.Join(dir, "b.yml")}
	for file, name := range map[string]string{t.fileA: "chaos", t.fileB: fleetB} {
		if err := os.WriteFile(file, []byte(FleetYAML(name, sim.URL, "v1", cfg.Count, "")), 0o644); err != nil {
			return res, err
		}
	}
	if err := t.seedForeign(ctx); err != nil {
		return res, err
	}
	if err := t.killDuringA(ctx, len(t.foreign)+k); err != nil {
		return res, err
	}
	if err := t.applyBoth(ctx); err != nil {
		return res, err
	}
	if err := t.destroyA(ctx); err != nil {
		return res, err
	}
	res.Took = time.Since(start)
	return res, nil
}

// run runs one lkfleet command against the front, bounded by the
// trial's timeout plus a margin, and records the longest.
func (t *simTrial) run(ctx context.Context, args ...string) Step {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.Timeout+30*time.Second)
	defer cancel()
	start := time.Now()
	out, errs, code := Subprocess(t.cfg.Bin)(ctx, t.sim.Env(), args...)
	st := Step{Args: args, Code: code, Took: time.Since(start), Stdout: out, Stderr: errs}
	t.res.Longest = max(t.res.Longest, st.Took)
	if st.Took > t.cfg.Timeout+10*time.Second {
		t.problem("%s took %s, more than its --timeout %s", args[0], st.Took.Round(time.Second), t.cfg.Timeout)
	}
	if strings.Contains(out+errs, Token) {
		t.problem("%s printed the API token", args[0])
	}
	return st
}

func (t *simTrial) problem(format string, a ...any) {
	t.res.Problems = append(t.res.Problems, fmt.Sprintf(format, a...))
}

func (t *simTrial) apply(ctx context.Context, file string) Step {
	return t.run(ctx, "apply", "-f", file, "--auto-approve", "-o", "json", "--poll-interval", t.cfg.Poll.String(), "--timeout", t.cfg.Timeout.String())
}

func (t *simTrial) plan(ctx context.Context, file string) Step {
	return t.run(ctx, "plan", "-f", file, "--detailed-exitcode")
}

// settle waits out the list lag, so that a listing shows every device.
func (t *simTrial) settle() { time.Sleep(t.cfg.ListLag + 50*time.Millisecond) }
