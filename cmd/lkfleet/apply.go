package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/internal/fileinput"
	"github.com/lkfleet/lkfleet/internal/ui"
	"github.com/lkfleet/lkfleet/pkg/executor"
	"github.com/lkfleet/lkfleet/pkg/pipeline"
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
	output        string
	lock          lockFlags
}

func newApplyCmd(env *Env) *cobra.Command {
	o := &applyOptions{}
	cmd := &cobra.Command{
		Use:   "apply [PLANFILE]",
		Short: "Create, rebuild and delete devices so the project matches the fleet file",
		Long: `apply computes a plan (or reads one saved by 'plan --out'), shows it, asks
for confirmation on a terminal, and carries it out under the API's rate limits.
A saved plan is refused when the fleet file or the live devices changed since.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			planFile := ""
			if len(args) == 1 {
				planFile = args[0]
			}
			return runApply(cmd.Context(), env, o, planFile)
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
	return cmd
}

func addExecFlags(cmd *cobra.Command, parallelism *int, timeout *time.Duration, output *string) {
	cmd.Flags().IntVar(parallelism, "parallelism", executor.DefaultParallelism, "concurrent API mutations (rollout.max_in_flight caps it further)")
	cmd.Flags().DurationVar(timeout, "timeout", 0, "give up after this long (0: no limit)")
	cmd.Flags().StringVarP(output, "output", "o", "auto", "progress output: auto, tty, plain, json")
}

func runApply(ctx context.Context, env *Env, o *applyOptions, planFile string) error {
	wait, err := executor.ParseWaitMode(o.wait)
	if err != nil {
		return err
	}
	mode, err := ui.ParseMode(o.output, env.OutTTY)
	if err != nil {
		return err
	}
	src, err := readFleet(env, o.fleet)
	if err != nil {
		return err
	}
	var p *planned
	if planFile != "" {
		p, err = loadSavedPlan(ctx, env, src, o.api, planFile)
	} else {
		p, err = computePlan(ctx, env, src, o.api, o.plan)
	}
	if err != nil {
		return err
	}
	defer func() { p.client.Close() }()
	var lk *fleetLease
	if p.plan.HasChanges() {
		// One apply per fleet: the lease is held from here to the end and
		// the plan re-checked under it (lock.go).
		if lk, err = startLease(ctx, env, src.fleet, o.api, o.lock, "apply"); err != nil {
			return err
		}
		defer lk.release()
		replan := func() (*planned, error) {
			return computePlan(ctx, env, src, o.api, o.plan)
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
	if !o.autoApprove {
		if err := confirm(ctx, env, "apply", "Do you want to apply these changes?"); err != nil {
			return err
		}
	}
	return lk.finish(execute(ctx, env, p, execution{mode: mode, opts: executor.Options{
		Parallelism:   o.parallelism,
		Wait:          wait,
		Timeout:       o.timeout,
		FailedRetries: o.failedRetries,
		PollInterval:  o.pollInterval,
	}}))
}

// execution says how execute runs a plan: the progress output, the
// executor's options, and whether this is a destroy (for the summary).
type execution struct {
	mode    ui.Mode
	opts    executor.Options
	destroy bool
}

// execute carries out p.plan with a progress reporter and prints the
// summary; its error carries the exit code.
func execute(ctx context.Context, env *Env, p *planned, x execution) error {
	mode, opts, destroy := x.mode, x.opts, x.destroy
	rep := ui.New(env.Out, mode, ui.Options{NoColor: !colorOut(env)})
	rep.SetPlan(p.plan)
	opts.OnEvent = rep.Event
	if opts.FailedRetries == 0 {
		opts.FailedRetries = -1
	}
	res, err := executor.Apply(ctx, p.client, p.plan, opts)
	st := p.client.Stats()
	in := ui.SummaryInput{
		Destroy:   destroy,
		Added:     res.Created + res.Replaced,
		Rebuilt:   res.Rebuilt,
		Changed:   res.Updated,
		Destroyed: res.Deleted + res.Replaced,
		Elapsed:   res.Elapsed,
		Requests:  st.Requests,
		Throttled: st.Throttled,
		Halted:    res.HaltReason,
	}
	for _, f := range res.Failed {
		in.Failed = append(in.Failed, ui.FailedLine{Hostname: f.Hostname, Slot: f.Slot, DeviceID: f.ID, Reason: f.LastEvent})
	}
	for _, c := range res.NotDone {
		in.NotDone = append(in.NotDone, ui.Symbol(c.Action)+" "+c.Hostname()+" ("+c.Slot()+")")
	}
	interrupted := errors.Is(err, context.Canceled)
	// Stopped early: Ctrl-C, --timeout, or an API that stayed unreachable.
	in.Interrupted = interrupted || (err != nil && !res.Halted && len(res.NotDone) > 0)
	if serr := rep.Summary(in); serr != nil && err == nil {
		err = serr
	}
	switch {
	case err == nil:
		return nil
	case interrupted:
		return withCode(ExitInterrupted, nil)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("stopped at --timeout %s with %d change(s) not done", opts.Timeout, len(res.NotDone))
	case len(res.Failed) > 0 || res.Halted:
		// The summary already named every failure.
		return withCode(ExitError, nil)
	}
	return err
}

// loadSavedPlan reads a plan saved by 'plan --out' and refuses it when the
// fleet file or the live devices changed since.
func loadSavedPlan(ctx context.Context, env *Env, src fleetSource, a apiFlags, path string) (_ *planned, err error) {
	fleet := src.fleet
	defer func() { err = explain(err, fleet) }()
	data, err := fileinput.Read(path, fileinput.MaxPlanFile)
	if err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	plan, err := planner.Load(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	client, err := newClient(env, fleet, a)
	if err != nil {
		return nil, err
	}
	if err := pipeline.CheckSaved(ctx, client, pipeline.Saved{Plan: plan, Path: path}, fleet, src.bytes); err != nil {
		client.Close()
		return nil, err
	}
	return &planned{fleet: fleet, client: client, plan: plan}, nil
}
