package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/internal/ui"
	"github.com/lkfleet/lkfleet/pkg/executor"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

func init() { commands = append(commands, newDestroyCmd) }

type destroyOptions struct {
	fleet       fleetFlags
	api         apiFlags
	autoApprove bool
	parallelism int
	timeout     time.Duration
	output      string
	lock        lockFlags
}

func newDestroyCmd(env *Env) *cobra.Command {
	o := &destroyOptions{}
	cmd := &cobra.Command{
		Use:   "destroy",
		Short: "Delete every device of the fleet, and nothing else",
		Long: `destroy deletes every device that carries the fleet's tag. Devices
without it are never touched, whatever their hostname.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDestroy(cmd, env, o)
		},
	}
	addFleetFlags(cmd, &o.fleet)
	addAPIFlags(cmd, &o.api)
	addExecFlags(cmd, &o.parallelism, &o.timeout, &o.output)
	addLockFlags(cmd, &o.lock, true)
	cmd.Flags().BoolVar(&o.autoApprove, "auto-approve", false, "destroy without asking for confirmation")
	return cmd
}

func runDestroy(cmd *cobra.Command, env *Env, o *destroyOptions) error {
	ctx := cmd.Context()
	mode, err := ui.ParseMode(o.output, env.OutTTY)
	if err != nil {
		return err
	}
	// What destroy deletes is named by the fleet and project alone: the
	// rest of the file (images, groups and their ${VAR}s) is not read.
	o.fleet.identityOnly = true
	l, err := listFleet(ctx, env, o.fleet, o.api)
	if err != nil {
		return err
	}
	defer l.client.Close()
	fleet := l.fleet
	// With nothing desired, the planner deletes exactly the fleet's live
	// devices; foreign devices are not even listed.
	plan, err := destroyPlan(fleet, l.live, l.fleetBytes)
	if err != nil {
		return err
	}
	again := resumeCommand(cmd, o.fleet)
	if !plan.HasChanges() {
		// The plan's "No changes. The fleet matches ..." would read as if
		// the fleet were up, when it has no device at all.
		if mode != ui.JSON {
			if _, err := fmt.Fprintf(env.Out, "Nothing to destroy: fleet %q has no devices in project %s.\n", fleet.Name, fleet.Project); err != nil {
				return err
			}
		}
		// VLANs kept by an earlier destroy (still in use then) go now,
		// under the lease like every other change.
		if n, err := countFleetVLANs(ctx, l.client, fleet.Name); err != nil || n == 0 {
			return err
		}
	} else {
		if mode != ui.JSON {
			if err := planner.RenderText(env.Out, plan, planner.TextOptions{Color: colorOut(env), FleetFile: o.fleet.File}); err != nil {
				return err
			}
		}
		if !o.autoApprove {
			if err := confirm(ctx, env, "destroy", fmt.Sprintf("Destroy all %d devices of fleet %q?", plan.Summary().Destroy, fleet.Name)); err != nil {
				return err
			}
		}
	}
	p := &planned{fleet: fleet, client: l.client, plan: plan}
	lk, err := startLease(ctx, env, fleet, l.client, o.lock, "destroy") // lock.go
	if err != nil {
		return err
	}
	defer lk.release()
	// Devices that changed state while the lease was taken (a create
	// finishing) are planned again; devices that appeared meanwhile are
	// deleted only with --auto-approve, which asked about no list.
	replan := func() (*planned, error) {
		live, err := l.client.List(ctx)
		if err != nil {
			return nil, err
		}
		next, err := destroyPlan(fleet, live, l.fleetBytes)
		if err != nil {
			return nil, err
		}
		if !o.autoApprove {
			if err := sameDevices(plan, next); err != nil {
				return nil, fmt.Errorf("%w: run %s to review it", err, again)
			}
		}
		return &planned{fleet: fleet, client: l.client, plan: next}, nil
	}
	if ctx, p, err = lk.ready(ctx, p, replan); err != nil {
		return err
	}
	lk.begin()
	if p.plan.HasChanges() {
		err = execute(ctx, env, p, execution{mode: mode, destroy: true, resume: again, opts: executor.Options{
			Parallelism: o.parallelism,
			Wait:        executor.WaitNone,
			Timeout:     o.timeout,
		}})
	}
	if err == nil {
		// Still under the lease: no apply of the fleet attaches a device
		// to a VLAN in between.
		err = deleteFleetVLANs(ctx, l.client, fleet.Name, again, env.Err) // network.go
	}
	return lk.finish(err)
}

// destroyPlan deletes every live device of the fleet: with nothing
// desired, the planner deletes exactly those, and foreign devices are not
// even listed.
func destroyPlan(fleet *spec.Fleet, live []planner.Live, fleetBytes []byte) (planner.Plan, error) {
	plan, err := planner.Compute(planner.Input{
		Fleet:            fleet,
		Live:             live,
		FleetFingerprint: planner.FleetFingerprint(fleetBytes),
	})
	if err != nil {
		return planner.Plan{}, err
	}
	for i := range plan.Changes {
		plan.Changes[i].Reasons = []string{"lkfleet destroy removes every device of fleet " + fleet.Name}
	}
	return plan, nil
}

// sameDevices refuses a destroy plan made again under the lease that
// deletes a device the confirmed plan did not name.
func sameDevices(confirmed, again planner.Plan) error {
	named := make(map[string]bool, len(confirmed.Changes))
	for _, c := range confirmed.Changes {
		named[c.DeviceID()] = true
	}
	for _, c := range again.Changes {
		if !named[c.DeviceID()] {
			return fmt.Errorf("device %s (slot %s) appeared after the destroy was confirmed", c.DeviceID(), c.Slot())
		}
	}
	return nil
}

// confirm asks question on the terminal before command changes anything.
// Ctrl-C at the prompt cancels at once and exits 130, like Ctrl-C anywhere
// else; any answer but "yes" cancels with exit 1.
func confirm(ctx context.Context, env *Env, command, question string) error {
	if !env.InTTY {
		return fmt.Errorf("%s needs confirmation: run it on a terminal, or pass --auto-approve", command)
	}
	ok, err := ui.ConfirmContext(ctx, env.In, env.Out, question)
	switch {
	case ctx.Err() != nil:
		return withCode(ExitInterrupted, fmt.Errorf("%s cancelled at the prompt (interrupted); nothing was changed", command))
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%s cancelled; nothing was changed", command)
	}
	return nil
}
