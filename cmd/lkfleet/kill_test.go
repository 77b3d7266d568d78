package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/chaos/harness"
)

// TestSIGKILLAndRerunAtOnce is the short version of make chaos's SIGKILL
// trials (issue 14 cases 3 and 4): a grow, a rebuild and a shrink, each
// killed with SIGKILL at a seeded random request, then re-run at once
// while the simulator's list lag still hides the killed run's devices.
// Every trial must converge without a duplicate ever created, without an
// empty slot and without a device left on the old image.
func TestSIGKILLAndRerunAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("subprocess build skipped in -short mode")
	}
	bin := filepath.Join(t.TempDir(), "lkfleet")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill points seeded with %d", seed)
	results, err := harness.Kills(t.Context(), harness.KillConfig{
		Dir: t.TempDir(), Bin: bin, Count: 1, Seed: seed, Trials: 3,
		ListLag: 500 * time.Millisecond, ProvisionTime: 200 * time.Millisecond, Poll: 50 * time.Millisecond,
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		for _, p := range r.Problems {
			t.Errorf("%s: %s", r.Name, p)
		}
	}
}

func TestListLagFlagAndEnv(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want time.Duration
		err  bool
	}{
		{nil, "", 5 * time.Second, false},
		{nil, "8s", 8 * time.Second, false},
		{[]string{"--list-lag", "2s"}, "8s", 2 * time.Second, false},
		{[]string{"--list-lag", "0"}, "", -1, false},
		{nil, "0s", -1, false},
		{nil, "soon", 0, true},
		{[]string{"--list-lag", "-1s"}, "", 0, true},
	} {
		env := &Env{Getenv: func(k string) string {
			if k == listLagEnv {
				return tc.env
			}
			return ""
		}}
		cmd := newApplyCmd(env)
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Fatal(err)
		}
		lag, _ := cmd.Flags().GetDuration("list-lag")
		got, err := listLag(cmd, env, lag)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%v with %s=%q: %v, %v; want %v (error %v)", tc.args, listLagEnv, tc.env, got, err, tc.want, tc.err)
		}
	}
}
