package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/pkg/executor"
)

// listLagEnv sets --list-lag when the flag is not given.
const listLagEnv = "LKFLEET_LIST_LAG"

// addListLagFlag adds --list-lag: how long the API may hide a new device
// from its listings. It is a property of the API, measured, not a
// constant of lkfleet (see docs/reliability.md).
func addListLagFlag(cmd *cobra.Command, lag *time.Duration) {
	cmd.Flags().DurationVar(lag, "list-lag", executor.DefaultListLag,
		"how long the API may hide a new device from listings (0: not at all; env "+listLagEnv+"): "+
			"creates wait for it after an interrupted run, and a device unseen for longer is missing")
}

// listLag is the executor's ListLag for the command: the flag, else
// LKFLEET_LIST_LAG, else the default; 0 (no lag) becomes the executor's
// negative "none".
func listLag(cmd *cobra.Command, env *Env, flag time.Duration) (time.Duration, error) {
	lag := flag
	if v := env.Getenv(listLagEnv); v != "" && !cmd.Flags().Changed("list-lag") {
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("%s=%q: %v", listLagEnv, v, err)
		}
		lag = d
	}
	switch {
	case lag < 0:
		return 0, fmt.Errorf("--list-lag %s must not be negative", lag)
	case lag == 0:
		return -1, nil
	}
	return lag, nil
}
