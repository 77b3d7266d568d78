package harness

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// InterruptConfig configures the interruption trials.
type InterruptConfig struct {
	// Dir is the trials' scratch directory.
	Dir string
	// Count is devices per group and zone: the fleet grows from 6×Count
	// to 18×Count devices and shrinks back.
	Count int
	// Seed, FaultRate and AmbiguousCreateRate configure the simulator's
	// faults (failed provisions are left out so every trial's accounting
	// is exact).
	Seed                           uint64
	FaultRate, AmbiguousCreateRate float64
	ListLag, ProvisionTime         time.Duration
	// Poll is apply's --poll-interval.
	Poll time.Duration
	// StopWithin bounds the time from Ctrl-C to exit (default 5 s).
	StopWithin time.Duration
	// Trials, if positive, runs only the first Trials trials.
	Trials int
	// Logf, if set, receives progress lines.
	Logf func(format string, args ...any)
}

// TrialResult is one interruption and the resume after it.
type TrialResult struct {
	// Name says when Ctrl-C came.
	Name string
	// Code is the interrupted apply's exit code (want 130).
	Code int
	// Outcome is the summary's result ("interrupted"; "" without summary).
	Outcome string
	// Stopped is the time from Ctrl-C to exit.
	Stopped time.Duration
	// Done, NotDone and Failed are the summary's accounting.
	Done, NotDone, Failed int
	// Resumes is how many applies converged afterwards (0: none did).
	Resumes int
	// Duplicates the simulator counted after the resume.
	Duplicates int
	// Problems lists every guarantee the trial saw broken.
	Problems []string
}

// trial is one interruption: how to prepare the fleet file, when to
// press Ctrl-C, and how many changes the interrupted apply's plan has.
type trial struct {
	name    string
	rel     string
	count   int
	changes int
	// trigger sees every API request with counts of creates, deletes and
	// actions so far in this trial and says when to interrupt.
	trigger func(method, path string, n counts) bool
	// hold: the request that fired the trigger is answered only once the
	// apply has ended (or StopWithin after Ctrl-C, so an apply that
	// ignores Ctrl-C is seen to). The apply can then do nothing after it
	// before Ctrl-C reaches it, however late a loaded machine delivers
	// the signal to a subprocess.
	hold bool
}

type counts struct{ creates, deletes, actions int }

// Interrupts runs the interruption trials on one lab, in order: Ctrl-C
// before any create, during creates, while waiting for new devices,
// during deletes and during a rebuild. After each, it checks the exit
// code (130), the time to exit, the summary's accounting against what the
// simulator did, and that the next apply converges without duplicates.
func Interrupts(ctx context.Context, cfg InterruptConfig, run Runner) ([]TrialResult, error) {
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if cfg.StopWithin == 0 {
		cfg.StopWithin = 5 * time.Second
	}
	lab, err := NewLab(LabConfig{Dir: cfg.Dir, Sim: packetsim.Config{
		Seed:                cfg.Seed,
		FaultRate:           cfg.FaultRate,
		AmbiguousCreateRate: cfg.AmbiguousCreateRate,
		ListLag:             cfg.ListLag,
		ProvisionTime:       cfg.ProvisionTime,
		DeprovisionTime:     cfg.ProvisionTime / 2,
	}})
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	seeded, err := lab.SeedForeign(ctx, 6)
	if err != nil {
		return nil, err
	}
	c, n := cfg.Count, 6*cfg.Count
	devices := func(m string) bool { return strings.HasSuffix(m, "/devices") }
	// Each trial starts where the previous one's resume left the fleet:
	// c slots, then 2c, 3c, back to c, then a new image.
	trials := []trial{
		// Ctrl-C while the plan lists the fleet. Without the hold the
		// signal would race the lease, the re-listing under it and the
		// list-lag fence (about half a second) to the first create.
		{name: "before creates", rel: "v1", count: c, changes: n, hold: true,
			trigger: func(m, p string, k counts) bool { return m == "GET" && devices(p) }},
		{name: "during creates", rel: "v1", count: 2 * c, changes: n,
			trigger: func(m, p string, k counts) bool { return k.creates >= n/3 }},
		{name: "after creates, while waiting", rel: "v1", count: 3 * c, changes: n,
			trigger: func(m, p string, k counts) bool { return k.creates >= n && m == "GET" && devices(p) }},
		{name: "during deletes", rel: "v1", count: c, changes: 2 * n,
			trigger: func(m, p string, k counts) bool { return k.deletes >= n/2 }},
		{name: "during a rebuild", rel: "v2", count: c, changes: n,
			trigger: func(m, p string, k counts) bool { return k.actions >= n/3 }},
	}
	if cfg.Trials > 0 && cfg.Trials < len(trials) {
		trials = trials[:cfg.Trials]
	}
	var out []TrialResult
	for _, tr := range trials {
		r, err := lab.interrupt(ctx, cfg, run, tr)
		if err != nil {
			return out, fmt.Errorf("trial %q: %w", tr.name, err)
		}
		logf("interrupt %s: exit %d (%s) %s after Ctrl-C; %d done, %d not done, %d failed; converged after %d apply(s)",
			r.Name, r.Code, r.Outcome, r.Stopped.Round(time.Millisecond), r.Done, r.NotDone, r.Failed, r.Resumes)
		out = append(out, r)
	}
	changed, err := lab.ForeignChanges(ctx, seeded)
	if err != nil {
		return out, err
	}
	if len(changed) > 0 && len(out) > 0 {
		last := &out[len(out)-1]
		for _, c := range changed {
			last.Problems = append(last.Problems, "foreign device "+c)
		}
	}
	return out, nil
}

// interrupt runs one trial: the interrupted apply, the checks of its exit
// and summary against what the simulator did, and the resume.
func (l *Lab) interrupt(ctx context.Context, cfg InterruptConfig, run Runner, tr trial) (TrialResult, error) {
	res := TrialResult{Name: tr.name}
	if err := l.WriteFleet(tr.rel, tr.count); err != nil {
		return res, err
	}
	desired := DesiredSlots(tr.count)
	l.settle()
	before, err := l.Listing(ctx)
	if err != nil {
		return res, err
	}
	slotsBefore := len(Fleet(before))
	creates0 := l.Sim().Stats().Creates

	st, at, end := l.applyInterrupted(ctx, cfg, run, tr)
	checkExit(&res, cfg, st, at, end)
	sum := checkSummary(&res, tr, st)
	if err := l.checkDone(ctx, &res, tr, sum, slotsBefore, creates0); err != nil {
		return res, err
	}
	if err := l.resume(ctx, cfg, run, &res, desired); err != nil {
		return res, err
	}
	return res, nil
}

// applyInterrupted runs an apply and cancels it (Ctrl-C) when the trial's
// trigger fires. It returns the apply's step, when Ctrl-C came (zero if
// it never did) and when the apply ended.
func (l *Lab) applyInterrupted(ctx context.Context, cfg InterruptConfig, run Runner, tr trial) (st Step, cancelAt, end time.Time) {
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu sync.Mutex
		k  counts
		at time.Time
	)
	ended := make(chan struct{})
	l.OnRequest(func(method, path string) {
		mu.Lock()
		switch {
		case method == "POST" && strings.HasSuffix(path, "/devices"):
			k.creates++
		case method == "DELETE":
			k.deletes++
		case method == "POST" && strings.HasSuffix(path, "/actions"):
			k.actions++
		}
		fired := at.IsZero() && tr.trigger(method, path, k)
		if fired {
			at = time.Now()
			cancel()
		}
		mu.Unlock()
		if fired && tr.hold {
			select {
			case <-ended:
			case <-time.After(cfg.StopWithin):
			}
		}
	})
	st = l.run(actx, run, l.ApplyArgs(cfg.Poll)...)
	end = time.Now()
	close(ended)
	l.OnRequest(nil)
	mu.Lock()
	cancelAt = at
	mu.Unlock()
	return st, cancelAt, end
}

// checkExit records the interrupted apply's exit code and time to exit,
// and the problems with either (or with its output leaking the token).
func checkExit(res *TrialResult, cfg InterruptConfig, st Step, at, end time.Time) {
	res.Code = st.Code
	if at.IsZero() {
		res.Problems = append(res.Problems, fmt.Sprintf("the apply ended (exit %d) before Ctrl-C came", st.Code))
	} else {
		res.Stopped = end.Sub(at)
	}
	if res.Code != 130 {
		res.Problems = append(res.Problems, fmt.Sprintf("interrupted apply exited %d, want 130; stderr: %s", st.Code, lastLine(st.Stderr)))
	}
	if strings.Contains(st.Stdout+st.Stderr, Token) {
		res.Problems = append(res.Problems, "the interrupted apply printed the API token")
	}
	if res.Stopped > cfg.StopWithin {
		res.Problems = append(res.Problems, fmt.Sprintf("exit took %s after Ctrl-C, want at most %s", res.Stopped, cfg.StopWithin))
	}
}

// checkSummary records the interrupted apply's summary and checks that it
// says "interrupted" and accounts for every change of the plan. It returns
// the summary (zero when the apply printed none).
func checkSummary(res *TrialResult, tr trial, st Step) Summary {
	sum, ok := ParseSummary(st.Stdout)
	if ok {
		res.Outcome = sum.Result
		res.Done = sum.Added + sum.Rebuilt + sum.Changed + sum.Destroyed
		res.NotDone, res.Failed = len(sum.NotDone), len(sum.Failed)
		if sum.Result != "interrupted" {
			res.Problems = append(res.Problems, "summary result "+sum.Result+", want interrupted")
		}
		if total := res.Done + res.NotDone + res.Failed; total != tr.changes {
			res.Problems = append(res.Problems, fmt.Sprintf("summary accounts for %d changes (%d done, %d not done, %d failed), the plan had %d",
				total, res.Done, res.NotDone, res.Failed, tr.changes))
		}
	} else if !strings.Contains(strings.ToLower(st.Stderr), "interrupt") {
		res.Problems = append(res.Problems, "no summary and no word of the interruption; stderr: "+lastLine(st.Stderr))
	}
	return sum
}

// checkDone checks the summary against the simulator: what the summary
// claims done must have happened, and what happened must be claimed done
// or not done.
func (l *Lab) checkDone(ctx context.Context, res *TrialResult, tr trial, sum Summary, slotsBefore, creates0 int) error {
	l.settle()
	after, err := l.Listing(ctx)
	if err != nil {
		return err
	}
	slotsAfter := len(Fleet(after))
	created := l.Sim().Stats().Creates - creates0
	switch {
	case strings.HasPrefix(tr.name, "during deletes"):
		removed := slotsBefore - slotsAfter
		if removed < sum.Destroyed || removed > sum.Destroyed+res.NotDone+res.Failed {
			res.Problems = append(res.Problems, fmt.Sprintf("%d devices deleted, the summary says %d destroyed and %d not done", removed, sum.Destroyed, res.NotDone))
		}
	case tr.rel == "v1":
		grown := slotsAfter - slotsBefore
		if grown < sum.Added || grown > sum.Added+res.NotDone+res.Failed {
			res.Problems = append(res.Problems, fmt.Sprintf("%d slots filled, the summary says %d added and %d not done", grown, sum.Added, res.NotDone))
		}
		if tr.name == "before creates" && created != 0 {
			res.Problems = append(res.Problems, fmt.Sprintf("%d devices created after Ctrl-C before any create", created))
		}
	}
	return nil
}

// resume checks that the next apply converges (two at most) without
// duplicates and that a plan afterwards has nothing to do.
func (l *Lab) resume(ctx context.Context, cfg InterruptConfig, run Runner, res *TrialResult, desired []string) error {
	for i := 1; i <= 2; i++ {
		st, problems, err := l.Apply(ctx, run, cfg.Poll, desired)
		if err != nil {
			return err
		}
		res.Problems = append(res.Problems, problems...)
		if st.Code == 0 {
			res.Resumes = i
			break
		}
	}
	if res.Resumes == 0 {
		res.Problems = append(res.Problems, "no apply converged after the interruption")
	} else if p := l.Plan(ctx, run); p.Code != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("plan --detailed-exitcode after the resume exited %d", p.Code))
	}
	res.Duplicates = l.Sim().Stats().Duplicates
	if res.Duplicates != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d duplicate devices", res.Duplicates))
	}
	return nil
}

// RestartConfig configures a simulator restart in the middle of an apply.
type RestartConfig struct {
	// Dir is the scratch directory (it holds the state file).
	Dir string
	// Count is devices per group and zone.
	Count int
	// ProvisionTime and Poll as in ChaosConfig.
	ProvisionTime, Poll time.Duration
	// Down is how long the simulator stays down after the first third of
	// the creates; 0 keeps it down until the apply gives up.
	Down time.Duration
	// ExtraArgs are added to the interrupted apply (e.g. --timeout).
	ExtraArgs []string
}

// RestartResult is what a restart trial saw.
type RestartResult struct {
	// Code, Stdout and Stderr are the apply's during which the simulator
	// restarted.
	Code           int
	Stdout, Stderr string
	Took           time.Duration
	// Resumes is how many more applies converged the fleet (0 when the
	// first one did, -1 when none did).
	Resumes    int
	Duplicates int
	Problems   []string
}

// Restart stops the simulator (which saves its state file) after a third
// of an apply's creates and starts it again on the same address after
// cfg.Down, or after the apply exits when Down is 0. The apply must ride
// out a short outage or exit 1 with an error naming the API; either way
// the next apply converges without duplicates.
func Restart(ctx context.Context, cfg RestartConfig, run Runner) (RestartResult, error) {
	res := RestartResult{Resumes: -1}
	lab, err := NewLab(LabConfig{Dir: cfg.Dir, Sim: packetsim.Config{
		ProvisionTime:   cfg.ProvisionTime,
		DeprovisionTime: cfg.ProvisionTime / 2,
		StateFile:       cfg.Dir + "/sim-state.json",
		SaveDelay:       10 * time.Millisecond,
	}})
	if err != nil {
		return res, err
	}
	defer lab.Close()
	if err := lab.WriteFleet("v1", cfg.Count); err != nil {
		return res, err
	}
	n := 6 * cfg.Count
	desired := DesiredSlots(cfg.Count)
	var once sync.Once
	restarted := make(chan error, 1)
	creates := 0
	var mu sync.Mutex
	lab.OnRequest(func(method, path string) {
		mu.Lock()
		defer mu.Unlock()
		if method == "POST" && strings.HasSuffix(path, "/devices") {
			creates++
		}
		if creates >= n/3 {
			once.Do(func() {
				// Not on the server's goroutine: Stop waits for it.
				go func() {
					err := lab.Stop()
					if cfg.Down > 0 {
						time.Sleep(cfg.Down)
						if serr := lab.Start(); err == nil {
							err = serr
						}
					}
					restarted <- err
				}()
			})
		}
	})
	st := lab.run(ctx, run, append(lab.ApplyArgs(cfg.Poll), cfg.ExtraArgs...)...)
	lab.OnRequest(nil)
	res.Code, res.Stdout, res.Stderr, res.Took = st.Code, st.Stdout, st.Stderr, st.Took
	select {
	case err := <-restarted:
		if err != nil {
			return res, err
		}
	default:
		res.Problems = append(res.Problems, fmt.Sprintf("the apply ended (exit %d) before the simulator was stopped", st.Code))
	}
	if cfg.Down == 0 {
		if err := lab.Start(); err != nil {
			return res, err
		}
		// The apply waits for the API until --timeout; its progress
		// output must have said why nothing moved.
		if st.Code != 1 || !strings.Contains(st.Stdout+st.Stderr, "connection refused") {
			res.Problems = append(res.Problems, fmt.Sprintf("with the API down the apply exited %d; stderr: %s", st.Code, lastLine(st.Stderr)))
		}
		// It could not release the fleet's lease either, which the
		// simulator keeps in its state file: the run is known dead, so
		// its operator breaks the lease, as the warning says.
		if !strings.Contains(st.Stderr, "expires on its own") {
			res.Problems = append(res.Problems, "with the API down the apply did not say that its lease stays behind")
		}
		if u := lab.run(ctx, run, "unlock", "-f", lab.FleetFile, "--auto-approve"); u.Code != 0 {
			res.Problems = append(res.Problems, fmt.Sprintf("unlock after the dead run exited %d; stderr: %s", u.Code, lastLine(u.Stderr)))
		}
	} else if st.Code != 0 && st.Code != 1 {
		res.Problems = append(res.Problems, fmt.Sprintf("across a restart the apply exited %d; stderr: %s", st.Code, lastLine(st.Stderr)))
	}
	if st.Code == 0 {
		res.Resumes = 0
	}
	for i := 1; res.Resumes < 0 && i <= 2; i++ {
		st, problems, err := lab.Apply(ctx, run, cfg.Poll, desired)
		if err != nil {
			return res, err
		}
		res.Problems = append(res.Problems, problems...)
		if st.Code == 0 {
			res.Resumes = i
		}
	}
	if res.Resumes < 0 {
		res.Problems = append(res.Problems, "no apply converged after the restart")
	}
	res.Duplicates = lab.Sim().Stats().Duplicates
	if res.Duplicates != 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d duplicate devices", res.Duplicates))
	}
	return res, nil
}
