package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
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
'ssh <id>@sos.<facility>.platformequinix.com', or wherever the device's sos
field points: the simulator's gives HOST:PORT of its own SOS server, and
console then runs 'ssh -p PORT -- <id>@HOST' (on loopback without recording
the simulator's host key, which changes at every start). ssh runs with a
minimal environment (no API token). --print only prints the command.`,
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

// sshUser and sshHost bound what reaches ssh's command line from the API:
// nothing that could read as an option or carry a second destination.
var (
	sshUser = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	sshHost = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$`)
)

// sosArgs returns ssh's arguments for a device's serial console: the sos
// value is a host (the service), HOST:PORT (the simulator) or either with
// USER@ in front; the user defaults to the device id.
func sosArgs(l planner.Live) ([]string, error) {
	sos := l.SOS
	if sos == "" {
		sos = "sos." + l.Facility + ".platformequinix.com"
	}
	user, host := l.ID, sos
	if u, h, ok := strings.Cut(sos, "@"); ok {
		user, host = u, h
	}
	port := ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		host, port = h, p
	}
	ip, ipErr := netip.ParseAddr(host)
	switch n, perr := strconv.Atoi(port); {
	case !sshUser.MatchString(user):
		return nil, fmt.Errorf("device %s: SOS user %q is not a valid user name", l.ID, user)
	case ipErr != nil && !sshHost.MatchString(host):
		return nil, fmt.Errorf("device %s: SOS host %q is not a valid host name", l.ID, host)
	case port != "" && (perr != nil || n < 1 || n > 65535):
		return nil, fmt.Errorf("device %s: SOS port %q is not a valid port", l.ID, port)
	}
	var args []string
	if port != "" {
		args = append(args, "-p", port)
	}
	if ipErr == nil && ip.IsLoopback() || strings.EqualFold(host, "localhost") {
		// The simulator's SOS host key is new at every start.
		args = append(args, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null")
	}
	if ipErr == nil && ip.Is6() {
		host = "[" + host + "]"
	}
	return append(args, "--", user+"@"+host), nil
}

// sshEnv is the environment ssh runs with: what it needs to find keys,
// an agent and the terminal, and nothing else (the API token stays here).
func sshEnv(env *Env) []string {
	var out []string
	for _, k := range []string{"PATH", "HOME", "USER", "LOGNAME", "TERM", "LANG", "LC_ALL", "LC_CTYPE", "SSH_AUTH_SOCK"} {
		if v := env.Getenv(k); v != "" {
			out = append(out, k+"="+v)
		}
	}
	return out
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
	args, err := sosArgs(found[0])
	if err != nil {
		return fmt.Errorf("console %s: %w", name, err)
	}
	if o.print {
		_, err := fmt.Fprintf(env.Out, "ssh %s\n", strings.Join(args, " "))
		return err
	}
	ssh := exec.CommandContext(ctx, "ssh", args...)
	ssh.Env = sshEnv(env)
	ssh.Stdin, ssh.Stdout, ssh.Stderr = env.In, env.Out, env.Err
	if err := ssh.Run(); err != nil {
		return fmt.Errorf("console %s: ssh %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}
