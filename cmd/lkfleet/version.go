package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newVersionCmd) }

func newVersionCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the lkfleet version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := io.WriteString(env.Out, versionLine())
			return err
		},
	}
}

// versionLine is what both `lkfleet version` and `lkfleet --version` print.
func versionLine() string {
	return fmt.Sprintf("lkfleet %s (%s, %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
