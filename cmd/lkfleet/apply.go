package main

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/internal/ui"
	"github.com/lkfleet/lkfleet/pkg/executor"
	"github.com/lkfleet/lkfleet/pkg/planner"
)

func init() { commands = append(commands, newApplyCmd) }

type applyOptions struct {
	fleet         fleetFlags
	api           apiFlags
	plan          planOptions
	autoApprove   bool
	parallelism   int
	timeout       time.Duration
	wait          string
	failedRetries int
	pollInterval  time.Duration
	listLag       time.Duration // --list-lag as given (the resume hint reads it)
	lag           time.Duration // the executor's ListLag (see listLag)
	output        string
	lock          lockFlags
}

func newApplyCmd(env *Env) *cobra.Command {
	o := &applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply [PLANFILE]",
		Short: "Create, rebuild and delete devices so the project matches the fleet file",
		Long: `apply computes a plan, shows it, asks for confirmation on a terminal, and
carries it out under the API's rate limits.

apply PLANFILE applies a plan saved by 'plan --out' without asking: the plan
was the approval. It reads the fleet file the plan records (relative to the
plan file; -f overrides) and refuses the plan when that file or the live
devices changed since.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			planFile := ""
			if len(args) == 1 {
				planFile = args[0]
			}
			lag, err := listLag(cmd, env, o.listLag)
			if err != nil {
				return err
			}
			o.lag = lag
			return runApply(cmd, env, o, planFile)
		},
	}
	addFleetFlags(cmd, &o.fleet)
	addAPIFlags(cmd, &o.api)
	addPlanFlags(cmd, &o.plan, true)
	addExecFlags(cmd, &o.parallelism, &o.timeout, &o.output)
	addLockFlags(cmd, &o.lock, true)
	cmd.Flags().BoolVar(&o.autoApprove, "auto-approve", false, "apply without asking for confirmation")
	cmd.Flags().StringVar(&o.wait, "wait", "active", "when a device is ready: active (API state), booted (the image reported in), none")
	cmd.Flags().IntVar(&o.failedRetries, "failed-retries", 1, "how often a device that ends failed is deleted and created again")
	cmd.Flags().DurationVar(&o.pollInterval, "poll-interval", executor.DefaultPollInterval, "how often the fleet is listed while waiting (one listing per interval for the whole fleet)")
	addListLagFlag(cmd, &o.listLag)
	return cmd
}

func addExecFlags(cmd *cobra.Command, parallelism *int, timeout *time.Duration, output *string) {
	cmd.Flags().IntVar(parallelism, "parallelism", executor.DefaultParallelism, "concurrent API mutations (rollout.max_in_flight caps it further)")
	cmd.Flags().DurationVar(timeout, "timeout", 0, "give up after this long (0: no limit)")
	cmd.Flags().StringVarP(output, "output", "o", "auto", "progress output: auto, tty, plain, json")
}

func runApply(cmd *cobra.Command, env *Env, o *applyOptions, planFile string) error {
	ctx := cmd.Context()
	wait, err := executor.ParseWaitMode(o.wait)
	if err != nil {
		return err
	}
	mode, err := ui.ParseMode(o.output, env.OutTTY)
	if err != nil {
		return err
	}
	var saved planner.Plan
	if planFile != "" {
		if saved, o.fleet.File, err = readSavedPlan(planFile, o.fleet.File, cmd.Flags().Changed("file")); err != nil {
			return err
		}
	}
	src, err := readFleet(env, o.fleet)
	if err != nil {
		return err
	}
	// The finished runs settle the pending markers of earlier rebuilds
	// (lock.go); a saved plan carries its own reading of them in its
	// changes, the executor reads the revs they leave.
	client, err := newClient(env, src.fleet, o.api)
	if err != nil {
		return err
	}
	defer client.Close()
	st := readLease(ctx, env, src.fleet, client, o.lock)
	// One apply per fleet: the lease is taken once the fleet passed the
	// checks that need no live state, and its settle delay passes while
	// the plan lists; the plan is checked again under it (lock.go). A run
	// that changes nothing gives it back as it found it.
	var lk *fleetLease
	defer func() { lk.release() }()
	takeLease := func(ctx context.Context) error {
		var err error
		if lk, err = startLease(ctx, env, src.fleet, client, o.lock, "apply"); err != nil {
			return err
		}
		return lk.settling(ctx)
	}
	var p *planned
	if planFile != "" {
		p, err = checkSavedPlan(ctx, client, src, saved, planFile, takeLease)
		if p != nil {
			p.runs = st.runs
		}
	} else {
		p, err = computePlan(ctx, env, src, client, o.plan, st.runs, takeLease)
	}
	if err != nil {
		return err
	}
	st.warn(env)
	if p.plan.HasChanges() {
		replan := func() (*planned, error) {
			st := readLease(ctx, env, src.fleet, client, o.lock)
			return computePlan(ctx, env, src, client, o.plan, st.runs, nil)
		}
		if planFile != "" {
			replan = nil
		}
		rctx, rp, err := lk.ready(ctx, p, replan)
		if err != nil {
			return err
		}
		ctx, p = rctx, rp
	}
	if mode != ui.JSON {
		if err := planner.RenderText(env.Out, p.plan, planner.TextOptions{Color: colorOut(env), FleetFile: o.fleet.File}); err != nil {
			return err
		}
	}
	if !p.plan.HasChanges() {
		return nil
	}
	// A saved plan was the approval: it is applied without asking, as
	// exactly what was reviewed (CheckSaved refused it if anything changed).
	if !o.autoApprove && planFile == "" {
		if err := confirm(ctx, env, "apply", "Do you want to apply these changes?"); err != nil {
			return err
		}
	}
	lk.begin()
	runID := lk.runID(p.plan) // lock.go: one PUT per in-place rebuild when the lease records the run
	return lk.finish(execute(ctx, env, p, execution{mode: mode, resume: resumeCommand(cmd, o.fleet), ran: func(res executor.Result) { lk.ran(runID, p.runs, res) }, opts: executor.Options{
		Parallelism:   o.parallelism,
		Wait:          wait,
		Timeout:       o.timeout,
		FailedRetries: o.failedRetries,
		PollInterval:  o.pollInterval,
		ListLag:       o.lag,
		QuietSince:    lk.quietSince(), // lock.go: skips or shortens the list-lag fence
		RunID:         runID,
		Runs:          p.runs,
	}}))
}

// execution says how execute runs a plan: the progress output, the
// executor's options, whether this is a destroy (for the summary) and the
// command that resumes it (resumeCommand).
type execution struct {
	mode    ui.Mode
	opts    executor.Options
	destroy bool
	resume  string
	// ran, when set, receives the executor's result once Apply returned
	// (apply records its finished run from it).
	ran func(executor.Result)
}

// execute carries out p.plan with a progress reporter and prints the
// summary; its error carries the exit code.
func execute(ctx context.Context, env *Env, p *planned, x execution) error {
	mode, opts, destroy := x.mode, x.opts, x.destroy
	rep := ui.New(env.Out, mode, ui.Options{NoColor: !colorOut(env), Coalesce: coalesceFor(env.Out)})
	rep.SetPlan(p.plan)
	opts.OnEvent = rep.Event
	if opts.FailedRetries == 0 {
		opts.FailedRetries = -1
	}
	res, err := executor.Apply(ctx, p.client, p.plan, opts)
	if x.ran != nil {
		x.ran(res)
	}
	st := p.client.Stats()
	in := ui.SummaryInput{
		Destroy:   destroy,
		Added:     res.Created + res.Replaced + len(res.Made),
		Rebuilt:   res.Rebuilt,
		Changed:   res.Updated,
		Destroyed: res.Deleted + res.Replaced,
		Elapsed:   res.Elapsed,
		Requests:  st.Requests,
		Throttled: st.Throttled,
		Halted:    res.HaltReason,
		Command:   x.resume,
		Timeout:   opts.Timeout,
	}
	for _, f := range res.Failed {
		in.Failed = append(in.Failed, ui.FailedLine{Hostname: f.Hostname, Slot: f.Slot, DeviceID: f.ID, Reason: f.LastEvent})
	}
	for _, c := range res.NotDone {
		line := ui.Symbol(c.Action) + " " + c.Hostname() + " (" + c.Slot() + ")"
		if id := res.Made[c.Slot()]; id != "" {
			line += ": new device " + id + " made (counted as added), the old one not yet deleted"
		}
		in.NotDone = append(in.NotDone, line)
	}
	interrupted := errors.Is(err, context.Canceled)
	if errors.Is(err, context.DeadlineExceeded) && len(res.NotDone) == 0 && len(res.Failed) == 0 && !res.Halted {
		// The deadline came after the last change was done: nothing was
		// stopped, the run is complete.
		err = nil
	}
	// Stopped early: --timeout, Ctrl-C, or an API that stayed unreachable.
	in.TimedOut = errors.Is(err, context.DeadlineExceeded) && !res.Halted
	in.Interrupted = interrupted || (err != nil && !res.Halted && len(res.NotDone) > 0)
	if serr := rep.Summary(in); serr != nil && err == nil {
		err = serr
	}
	switch {
	case err == nil:
		return nil
	case interrupted:
		return withCode(ExitInterrupted, nil)
	case in.TimedOut || len(res.Failed) > 0 || res.Halted:
		// The summary already said what was done and what was not.
		return withCode(ExitError, nil)
	}
	return err
}

// coalesceFor is how long plain and JSON progress lines written to out may
// wait to go out together (ui.Options.Coalesce): a tenth of a second when
// out is a file or pipe, where each write is a system call (one per
// event, about 5,000 for 1,000 devices), and none for writers in the
// process, which see every line at once.
func coalesceFor(out io.Writer) time.Duration {
	if _, ok := out.(*os.File); ok {
		return 100 * time.Millisecond
	}
	return 0
}
