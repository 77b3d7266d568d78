package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/lkfleet/lkfleet/pkg/lease"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/planner"
)

// KillConfig configures the SIGKILL trials: an apply is killed (kill -9,
// no chance to clean up) at a seeded random point and re-run at once,
// within the simulator's list lag — what a person does after a crash.
type KillConfig struct {
	// Dir is the trials' scratch directory; Bin the lkfleet binary (a
	// kill needs a process).
	Dir, Bin string
	// Count is devices per group and zone: the fleet moves between 6×Count
	// and 12×Count devices and between images v1 and v2.
	Count int
	// Seed picks the kill points; Trials is how many (default 20).
	Seed   uint64
	Trials int
	// ListLag, ProvisionTime and Poll as in ChaosConfig.
	ListLag, ProvisionTime, Poll time.Duration
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

// KillResult is one killed apply and the re-run after it.
type KillResult struct {
	// Name says what the killed apply was doing and when it died.
	Name string
	// Killed is false when the apply finished before the kill point.
	Killed bool
	// Resumes is how many re-runs it took to converge (0: none did).
	Resumes int
	// ExtraCreates counts creates beyond the slots the trial had to fill:
	// each one is a duplicate that was made (even if later deleted).
	ExtraCreates int
	// Duplicates, Empty and Stale are counted after the re-run: extra
	// devices in a slot, desired slots without a device, and devices whose
	// last boot was not the desired image.
	Duplicates, Empty, Stale int
	// Pending counts, right after a killed rebuild, devices whose PUT was
	// done but whose reboot may not have been sent: a lkfleet:pending
	// marker the fleet's lease record does not settle (planner.Runs).
	// status must not call any of them current. Markers of earlier
	// finished runs, which stay on their devices, are not counted.
	Pending  int
	Problems []string
}

// killTrial is one kind of killed apply.
type killTrial struct {
	name  string
	rel   string
	count int
	// fill is how many slots the apply must create.
	fill int
	// method and suffix select the requests counted for the kill point.
	method, suffix string
	// points is the number of such requests the apply makes.
	points int
}

// Kills runs the SIGKILL trials on one lab: in turn a grow (creates), a
// rebuild to the other image (killed after a PUT, before its reboot) and
// a shrink (deletes), each killed after a seeded random number of its
// requests, then re-run at once. After each it checks that the fleet
// converged with no duplicate ever made, no empty slot and no device on
// a stale image, and that `plan --detailed-exitcode` is clean.
func Kills(ctx context.Context, cfg KillConfig) ([]KillResult, error) {
	if cfg.Trials <= 0 {
		cfg.Trials = 20
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	lab, err := NewLab(LabConfig{Dir: cfg.Dir, Sim: packetsim.Config{
		Seed: cfg.Seed, ListLag: cfg.ListLag, ProvisionTime: cfg.ProvisionTime, DeprovisionTime: cfg.ProvisionTime / 2,
	}})
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	c, rel := cfg.Count, "v1"
	if err := lab.WriteFleet(rel, c); err != nil {
		return nil, err
	}
	if _, _, err := lab.Apply(ctx, Subprocess(cfg.Bin), cfg.Poll, DesiredSlots(c)); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 14))
	var out []KillResult
	for i := range cfg.Trials {
		var tr killTrial
		switch i % 3 {
		case 0:
			tr = killTrial{name: "grow", rel: rel, count: 2 * c, fill: 6 * c, method: "POST", suffix: "/devices", points: 6 * c}
		case 1:
			rel = map[string]string{"v1": "v2", "v2": "v1"}[rel]
			tr = killTrial{name: "rebuild", rel: rel, count: 2 * c, method: "PUT", points: 12 * c}
		case 2:
			tr = killTrial{name: "shrink", rel: rel, count: c, method: "DELETE", points: 6 * c}
		}
		k := 1 + rng.IntN(tr.points)
		r, err := lab.kill(ctx, cfg, tr, k)
		if err != nil {
			return out, fmt.Errorf("kill trial %d (%s): %w", i+1, r.Name, err)
		}
		logf("kill %s: killed %v, %d pending; converged after %d re-run(s); extra creates %d, duplicates %d, empty %d, stale %d",
			r.Name, r.Killed, r.Pending, r.Resumes, r.ExtraCreates, r.Duplicates, r.Empty, r.Stale)
		out = append(out, r)
	}
	return out, nil
}

// kill runs one trial: the apply is killed at its k-th counted request.
func (l *Lab) kill(ctx context.Context, cfg KillConfig, tr killTrial, k int) (KillResult, error) {
	res := KillResult{Name: fmt.Sprintf("%s to %d devices on %s, SIGKILL at %s #%d", tr.name, 6*tr.count, tr.rel, tr.method, k)}
	if err := l.WriteFleet(tr.rel, tr.count); err != nil {
		return res, err
	}
	creates0 := l.Sim().Stats().Creates
	res.Killed = l.runKilled(ctx, cfg.Bin, cfg.Poll, func(method, path string) bool {
		// Device calls only: the fleet lease's PUTs of the project are not kill points.
		return method == tr.method && strings.Contains(path, "/devices") && strings.HasSuffix(path, tr.suffix)
	}, k)
	if res.Killed {
		// kill -9 leaves the run's lease until its TTL: the operator, who
		// knows the run is dead, breaks it (what the refusal tells them to
		// do) and re-runs at once, still within the list lag.
		if u := l.run(ctx, Subprocess(cfg.Bin), "unlock", "-f", l.FleetFile, "--auto-approve"); u.Code != 0 {
			res.Problems = append(res.Problems, fmt.Sprintf("unlock after the kill exited %d: %s", u.Code, lastLine(u.Stderr)))
		}
	}

	if tr.name == "rebuild" && res.Killed {
		if err := l.checkPending(ctx, cfg.Bin, &res); err != nil {
			return res, err
		}
	}
	// The re-run comes at once, within the list lag.
	desired := DesiredSlots(tr.count)
	for i := 1; i <= 2; i++ {
		st, problems, err := l.Apply(ctx, Subprocess(cfg.Bin), cfg.Poll, desired)
		if err != nil {
			return res, err
		}
		res.Problems = append(res.Problems, problems...)
		if st.Code == 0 {
			res.Resumes = i
			break
		}
	}
	if res.Resumes == 0 {
		res.Problems = append(res.Problems, "no re-run converged after the kill")
	} else if p := l.Plan(ctx, Subprocess(cfg.Bin)); p.Code != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("plan --detailed-exitcode after the re-run exited %d: %s", p.Code, lastLine(p.Stdout)))
	}
	res.ExtraCreates = l.Sim().Stats().Creates - creates0 - tr.fill
	if res.ExtraCreates != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d creates beyond the %d slots to fill", res.ExtraCreates, tr.fill))
	}
	return res, l.countBroken(ctx, &res, desired, tr.rel)
}

// runKilled runs an apply and SIGKILLs it at the k-th request count
// selects; it reports whether the kill came before the apply finished.
func (l *Lab) runKilled(ctx context.Context, bin string, poll time.Duration, count func(method, path string) bool, k int) bool {
	cmd := exec.CommandContext(ctx, bin, l.ApplyArgs(poll)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for key, v := range l.Env() {
		cmd.Env = append(cmd.Env, key+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	killNow := make(chan struct{})
	var (
		mu    sync.Mutex
		n     int
		fired bool
	)
	l.OnRequest(func(method, path string) {
		mu.Lock()
		defer mu.Unlock()
		if count(method, path) {
			n++
		}
		if n >= k && !fired {
			fired = true
			close(killNow)
		}
	})
	defer l.OnRequest(nil)
	if err := cmd.Start(); err != nil {
		return false
	}
	exited := make(chan struct{})
	go func() {
		select {
		case <-killNow:
			_ = cmd.Process.Kill()
		case <-exited:
		}
	}()
	_ = cmd.Wait()
	close(exited)
	mu.Lock()
	defer mu.Unlock()
	return fired
}

// countBroken counts, after the list lag, duplicates, empty desired slots
// and devices whose newest boot did not load release rel's kernel.
func (l *Lab) countBroken(ctx context.Context, res *KillResult, desired []string, rel string) error {
	l.settle()
	devs, err := l.Listing(ctx)
	if err != nil {
		return err
	}
	fleet := Fleet(devs)
	last := map[string]packetsim.Boot{}
	for _, b := range l.Sim().Boots() {
		last[b.DeviceID] = b
	}
	for _, slot := range desired {
		ds := fleet[slot]
		if len(ds) == 0 {
			res.Empty++
			continue
		}
		res.Duplicates += len(ds) - 1
		for _, d := range ds {
			if b := last[d.ID]; !b.OK || !strings.Contains(b.KernelURL, "/images/"+rel+"/") {
				res.Stale++
				res.Problems = append(res.Problems, fmt.Sprintf("slot %s: device %s last booted %q (ok %v), want release %s",
					slot, d.ID, b.KernelURL, b.OK, rel))
			}
		}
	}
	if res.Duplicates+res.Empty > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d duplicates and %d empty slots after the re-run", res.Duplicates, res.Empty))
	}
	return nil
}

// checkPending counts the devices a killed rebuild left unfinished (a
// pending marker the lease record does not settle) and checks that
// `status` shows none of them on the current image.
func (l *Lab) checkPending(ctx context.Context, bin string, res *KillResult) error {
	devs, err := l.Listing(ctx)
	if err != nil {
		return err
	}
	runs, err := l.finishedRuns(ctx, "chaos")
	if err != nil {
		return err
	}
	st := l.run(ctx, Subprocess(bin), "status", "-f", l.FleetFile, "-o", "json")
	var rows []struct {
		ID      string `json:"id"`
		Current bool   `json:"current"`
	}
	if err := json.Unmarshal([]byte(st.Stdout), &rows); err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("status -o json after the kill: %v (exit %d)", err, st.Code))
		return nil
	}
	current := map[string]bool{}
	for _, r := range rows {
		current[r.ID] = r.Current
	}
	for _, d := range devs {
		if !(planner.Live{ID: d.ID, Tags: d.Tags}).Unfinished(runs) {
			continue
		}
		res.Pending++
		if current[d.ID] {
			res.Problems = append(res.Problems, fmt.Sprintf("status shows device %s as current while its rebuild is pending", d.ID))
		}
	}
	return nil
}

// finishedRuns reads the finished runs of fleet's lease record from the
// project's customdata, as plan and status read them.
func (l *Lab) finishedRuns(ctx context.Context, fleet string) (planner.Runs, error) {
	var runs planner.Runs
	body, err := l.get(ctx, "projects/"+l.Project())
	if err != nil {
		return runs, err
	}
	var p struct {
		Customdata map[string]struct {
			Runs []lease.Run `json:"runs"`
		} `json:"customdata"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return runs, fmt.Errorf("lab: project customdata: %w", err)
	}
	for _, r := range p.Customdata[lease.KeyPrefix+fleet].Runs {
		runs.Finish(r.ID, r.Unconfirmed)
	}
	return runs, nil
}
