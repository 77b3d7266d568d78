package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/internal/atomicfile"
	"github.com/lkfleet/lkfleet/pkg/planner"
)

func init() { commands = append(commands, newPlanCmd) }

type planCmdOptions struct {
	fleet        fleetFlags
	api          apiFlags
	plan         planOptions
	output       string
	out          string
	detailedExit bool
	lock         lockFlags
}

func newPlanCmd(env *Env) *cobra.Command {
	o := &planCmdOptions{}
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what apply would change",
		Long: `plan compares the fleet file with the project's live devices (one
tag-filtered listing) and prints the changes apply would make. Nothing is
changed. --out saves the plan for 'lkfleet apply PLANFILE'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPlan(cmd.Context(), env, o)
		},
	}
	addFleetFlags(cmd, &o.fleet)
	addAPIFlags(cmd, &o.api)
	addPlanFlags(cmd, &o.plan, true)
	addLockFlags(cmd, &o.lock, false)
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVar(&o.out, "out", "", "save the plan to FILE for 'lkfleet apply FILE'")
	cmd.Flags().BoolVar(&o.detailedExit, "detailed-exitcode", false, "exit 0 when there are no changes, 2 when there are, 1 on error")
	return cmd
}

func runPlan(ctx context.Context, env *Env, o *planCmdOptions) error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("unknown output format %q (text or json)", o.output)
	}
	src, err := readFleet(env, o.fleet)
	if err != nil {
		return err
	}
	// One read of the lease: who holds it, and the finished runs that
	// settle pending markers (lock.go).
	client, err := newClient(env, src.fleet, o.api)
	if err != nil {
		return err
	}
	defer client.Close()
	st := readLease(ctx, env, src.fleet, client, o.lock)
	p, err := computePlan(ctx, env, src, client, o.plan, st.runs, nil)
	if err != nil {
		return err
	}
	noteRunning(env, src.fleet, st)
	if o.output == "json" {
		err = planner.RenderJSON(env.Out, p.plan)
	} else {
		err = planner.RenderText(env.Out, p.plan, planner.TextOptions{Color: colorOut(env), FleetFile: o.fleet.File})
	}
	if err != nil {
		return err
	}
	if o.out != "" {
		if err := savePlan(o.out, planForSaving(p.plan, o.out, o.fleet.File)); err != nil {
			return err
		}
		if o.output == "text" {
			apply := "lkfleet apply " + shellQuote(o.out)
			if o.fleet.File == "-" {
				// The plan cannot say where a fleet read from stdin is.
				apply = "lkfleet apply -f FILE " + shellQuote(o.out)
			}
			fmt.Fprintf(env.Out, "\nSaved the plan to %s. To apply exactly this plan: %s\n", o.out, apply)
		}
	}
	if o.detailedExit && p.plan.HasChanges() {
		return withCode(ExitChanges, nil)
	}
	return nil
}

// savePlan writes a plan file atomically, readable only by its owner.
func savePlan(path string, p planner.Plan) error {
	if err := atomicfile.Write(path, 0o600, func(w io.Writer) error { return planner.Save(w, p) }); err != nil {
		return fmt.Errorf("save plan %s: %w", path, err)
	}
	return nil
}
