package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/internal/ui"
)

func init() { commands = append(commands, newUnlockCmd) }

type unlockOptions struct {
	fleet       fleetFlags
	api         apiFlags
	lock        lockFlags
	autoApprove bool
}

func newUnlockCmd(env *Env) *cobra.Command {
	o := &unlockOptions{}
	cmd := &cobra.Command{
		Use:   "unlock",
		Short: "Break the fleet's lease left by a run that died",
		Long: `unlock removes the lease an apply or destroy holds on the fleet. A run
killed without releasing its lease blocks the fleet until the lease expires
(a minute); unlock ends that wait. Breaking the lease of a run that is still
alive lets a second run change the fleet alongside it until the first one
notices at its next renewal (within a third of the lease's lifetime) and
stops: only unlock a fleet whose holder you know is gone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runUnlock(cmd.Context(), env, o)
		},
	}
	addFleetFlags(cmd, &o.fleet)
	addAPIFlags(cmd, &o.api)
	addLockFlags(cmd, &o.lock, false)
	cmd.Flags().BoolVar(&o.autoApprove, "auto-approve", false, "break the lease without asking for confirmation")
	return cmd
}

func runUnlock(ctx context.Context, env *Env, o *unlockOptions) error {
	fleet, err := loadFleet(env, o.fleet)
	if err != nil {
		return err
	}
	lk, closeLock, err := openLock(env, fleet, o.api, o.lock)
	if err != nil {
		return err
	}
	defer closeLock()
	h, err := lk.Holder(ctx)
	if err != nil {
		return explain(err, fleet)
	}
	if h == nil {
		fmt.Fprintf(env.Out, "Fleet %q is not locked.\n", fleet.Name)
		return nil
	}
	fmt.Fprintf(env.Out, "Fleet %q is locked: %s.\n", fleet.Name, h)
	if !o.autoApprove {
		if !env.InTTY {
			return errors.New("unlock needs confirmation: run it on a terminal, or pass --auto-approve")
		}
		ok, err := ui.Confirm(env.In, env.Out, "Break this lease? If that run is still alive, it stops at its next renewal.")
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("unlock cancelled")
		}
	}
	broke, err := lk.Break(ctx)
	if err != nil {
		return explain(err, fleet)
	}
	if broke == nil {
		fmt.Fprintf(env.Out, "The lease ended on its own meanwhile; fleet %q is not locked.\n", fleet.Name)
		return nil
	}
	fmt.Fprintf(env.Out, "Broke the lease of %s on fleet %q.\n", broke, fleet.Name)
	return nil
}
