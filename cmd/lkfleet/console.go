package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

func init() { commands = append(commands, newConsoleCmd) }

type consoleOptions struct {
	fleet fleetFlags
	api   apiFlags
	print bool
}

func newConsoleCmd(env *Env) *cobra.Command {
	o := &consoleOptions{}
	cmd := &cobra.Command{
		Use:   "console HOSTNAME|SLOT",
		Short: "Open a device's serial console (serial over SSH)",
		Long: `console finds the fleet's device by hostname or slot and runs
'ssh <id>@sos.<facility>.platformequinix.com' (the address the API gives in
the device's sos field when it has one). --print only prints the command.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runConsole(cmd.Context(), env, o, args[0])
		},
	}
	addFleetFlags(cmd, &o.fleet)
	addAPIFlags(cmd, &o.api)
	cmd.Flags().BoolVar(&o.print, "print", false, "print the ssh command instead of running it")
	return cmd
}

// sosAddress is where a device's serial console is reached.
func sosAddress(l planner.Live) string {
	if l.SOS != "" {
		if strings.Contains(l.SOS, "@") {
			return l.SOS
		}
		return l.ID + "@" + l.SOS
	}
	return l.ID + "@sos." + l.Facility + ".platformequinix.com"
}

func runConsole(ctx context.Context, env *Env, o *consoleOptions, name string) error {
	l, err := listFleet(ctx, env, o.fleet, o.api)
	if err != nil {
		return err
	}
	l.client.Close()
	fleet, live := l.fleet, l.live
	var found []planner.Live
	for _, l := range live {
		if !planner.Ignored(l.State) && (l.Hostname == name || l.Slot() == name) {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return fmt.Errorf("no device %q in fleet %s", name, fleet.Name)
	case 1:
	default:
		return fmt.Errorf("%d devices of fleet %s match %q; give a slot instead", len(found), fleet.Name, name)
	}
	addr := sosAddress(found[0])
	if o.print {
		_, err := fmt.Fprintf(env.Out, "ssh %s\n", addr)
		return err
	}
	ssh := exec.CommandContext(ctx, "ssh", addr)
	ssh.Stdin, ssh.Stdout, ssh.Stderr = env.In, env.Out, env.Err
	if err := ssh.Run(); err != nil {
		return fmt.Errorf("console %s: ssh %s: %w", name, addr, err)
	}
	return nil
}
