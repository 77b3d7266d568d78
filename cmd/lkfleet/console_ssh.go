package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// sosDestination matches what console hands to ssh: USER@HOST, the user a
// device id (or the API's own user part), the host a DNS name. Anything
// else — a value starting with '-' that ssh would read as an option, a
// space, a shell or ssh escape — is refused: the value comes from the API,
// and a compromised or buggy endpoint must not be able to run commands
// here (-oProxyCommand=...).
var sosDestination = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$`)

// consoleEnv are the only variables ssh gets from lkfleet's environment:
// what it needs to find its configuration, keys and agent and to drive the
// terminal. The API token (PACKET_AUTH_TOKEN and friends) and everything
// else stay behind, so neither ssh, a ProxyCommand nor a LocalCommand sees
// them.
var consoleEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "TERM", "LANG", "LC_ALL", "LC_CTYPE", "SSH_AUTH_SOCK", "TMPDIR"}

// consoleAddress returns the checked ssh destination of device l.
func consoleAddress(l planner.Live) (string, error) {
	addr := sosAddress(l)
	if !sosDestination.MatchString(addr) {
		return "", fmt.Errorf("device %s: refusing the serial console address %q: want USER@HOST", l.ID, addr)
	}
	return addr, nil
}

// sshCommand is ssh to addr with "--" before it (so that addr can never be
// read as an option) and a minimal environment taken from getenv.
func sshCommand(ctx context.Context, addr string, getenv func(string) string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ssh", "--", addr)
	cmd.Env = []string{}
	for _, k := range consoleEnv {
		if v := getenv(k); v != "" {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	return cmd
}
