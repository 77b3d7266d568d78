package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// resumeCommand is the one place that builds the command a summary tells
// the user to run again after a failed, halted or interrupted apply or
// destroy. It names the fleet file always (pasting the hint must not
// apply ./fleet.yml when another file was meant), and of the other flags
// only those that change what the next run does to the fleet: --project,
// --api-url and --list-lag (the re-run right after a stop must wait out
// what the API hides) when given, --wait when not the default. Flags that
// only forced this run's changes (--rebuild, --replace) or shape its
// output are left out: the next plan starts from the live devices. A saved
// plan is never named: after a partial apply it is stale, so the next run
// plans afresh. Values are shell-quoted so the hint pastes as it reads.
func resumeCommand(cmd *cobra.Command, ff fleetFlags) string {
	words := []string{"lkfleet", cmd.Name(), "-f", shellQuote(ff.File)}
	f := cmd.Flags()
	for _, name := range []string{"project", "wait", "api-url", "list-lag"} {
		fl := f.Lookup(name)
		if fl == nil || !fl.Changed || fl.Value.String() == fl.DefValue {
			continue
		}
		words = append(words, "--"+name, shellQuote(fl.Value.String()))
	}
	return strings.Join(words, " ")
}

// shellQuote returns s as one word for a POSIX shell: unchanged when it
// has only characters no shell treats specially, else in single quotes.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_./:=@%+,-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
