package main

import (
	"strings"
	"testing"
)

// TestResumeCommand: the hint names the file always, and of the other
// flags only --project, --api-url, --list-lag (when given) and --wait (when
// not the default), shell-quoted; destroy's the same way.
func TestResumeCommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"apply"}, "lkfleet apply -f fleet.yml"},
		{[]string{"apply", "-f", "lab.yml", "--wait", "active", "--rebuild", "all", "--parallelism", "3"}, "lkfleet apply -f lab.yml"},
		{[]string{"apply", "-f", "it's mine.yml", "--wait", "booted", "--project", "p 1"}, `lkfleet apply -f 'it'\''s mine.yml' --project 'p 1' --wait booted`},
		{[]string{"apply", "-f", "lab.yml", "--list-lag", "30s", "--poll-interval", "1s"}, "lkfleet apply -f lab.yml --list-lag 30s"},
		{[]string{"destroy", "-f", "lab.yml", "--api-url", "http://127.0.0.1:1/metal/v1/", "--timeout", "1m"}, "lkfleet destroy -f lab.yml --api-url http://127.0.0.1:1/metal/v1/"},
	} {
		root := newRootCmd(&Env{Getenv: func(string) string { return "" }})
		cmd, rest, err := root.Find(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatal(err)
		}
		file, _ := cmd.Flags().GetString("file")
		if got := resumeCommand(cmd, fleetFlags{File: file}); got != tc.want {
			t.Errorf("%s: hint %q, want %q", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}
