package harness_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/chaos/harness"
)

// buildDir holds the lkfleet binary the subprocess trials run, built once
// by the first trial that needs it.
var (
	buildDir  string
	buildOnce sync.Once
	binary    string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lkfleet-harness-")
	if err != nil {
		panic(err)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lkfleetBinary builds the binary once, or skips in -short mode.
func lkfleetBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("subprocess trials skipped in -short mode")
	}
	buildOnce.Do(func() {
		binary = filepath.Join(buildDir, "lkfleet")
		if out, err := exec.Command("go", "build", "-o", binary, "github.com/lkfleet/lkfleet/cmd/lkfleet").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// TestConcurrentAppliesSampled is the short version of make chaos's
// concurrent-apply trials (issue 14 cases 1 and 2): two applies of a
// 12-device fleet at once on a simulator with faults and a list lag,
// first waiting for each other (both exit 0), then with --lock-timeout 0
// (the second exits 1 naming the first and changes no device). The
// simulator's devices are sampled every 2 ms while they run: no slot may
// ever hold two live devices.
func TestConcurrentAppliesSampled(t *testing.T) {
	bin := lkfleetBinary(t)
	for _, timeout := range []time.Duration{time.Minute, 0} {
		res, err := harness.Concurrent(t.Context(), harness.ConcurrentConfig{
			Dir: t.TempDir(), Bin: bin, Count: 2, Applies: 2, LockTimeout: timeout, Foreign: 5, Seed: 7,
			FaultRate: 0.03, AmbiguousCreateRate: 0.05, ListLag: 300 * time.Millisecond,
			ProvisionTime: 100 * time.Millisecond, Poll: 30 * time.Millisecond, Logf: t.Logf,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: codes %v, refused %d, waited %d, peak %d in %d samples, creates %d, %s",
			res.Name, res.Codes, res.Refused, res.Waited, res.PeakLive, res.Samples, res.Creates, res.Took)
		for _, p := range res.Problems {
			t.Errorf("%s: %s", res.Name, p)
		}
		if res.Samples < 10 || res.PeakLive != 1 {
			t.Errorf("%s: %d samples, peak %d live devices in a slot: the sampler did not see the fleet", res.Name, res.Samples, res.PeakLive)
		}
	}
}

// TestSimulatorKillWithStateAndSecondFleet is the short version of make
// chaos's simulator-kill trials (issue 14 cases 6 and 7): `lkfleet sim
// --state` as a subprocess, SIGKILLed right after one of fleet A's
// creates was answered 201 and restarted from its state file; then A
// again and a second fleet B into the same project, then A destroyed.
// Every answered device must survive, no id may be issued twice, the
// destroy must touch only A's devices, and no apply may outlast its
// --timeout.
func TestSimulatorKillWithStateAndSecondFleet(t *testing.T) {
	bin := lkfleetBinary(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("trials seeded with %d", seed)
	results, err := harness.SimKills(t.Context(), harness.SimKillConfig{
		Dir: t.TempDir(), Bin: bin, Count: 1, Seed: seed, Trials: 1,
		ListLag: 300 * time.Millisecond, ProvisionTime: 100 * time.Millisecond, Poll: 30 * time.Millisecond,
		Down: 200 * time.Millisecond, Timeout: 60 * time.Second, Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		for _, p := range r.Problems {
			t.Errorf("%s: %s", r.Name, p)
		}
		if r.Answered == 0 {
			t.Errorf("%s: no create was answered before the kill", r.Name)
		}
	}
}
