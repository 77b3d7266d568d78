package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "dev"

// Exit codes (DESIGN section 9).
const (
	ExitOK          = 0
	ExitError       = 1
	ExitChanges     = 2 // plan --detailed-exitcode: there are changes
	ExitInterrupted = 130
)

// Env is everything a command takes from the process: streams, environment
// and terminal facts. Tests build one with buffers and a map.
type Env struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
	// OutTTY is true when Out is a terminal (colours, live progress,
	// confirmation prompts).
	OutTTY bool
	// InTTY is true when In is a terminal (confirmation prompts).
	InTTY bool
	// Getenv reads an environment variable.
	Getenv func(string) string
}

// SystemEnv is the Env of the real process.
func SystemEnv() *Env {
	return &Env{
		In:     os.Stdin,
		Out:    os.Stdout,
		Err:    os.Stderr,
		OutTTY: isatty.IsTerminal(os.Stdout.Fd()),
		InTTY:  isatty.IsTerminal(os.Stdin.Fd()),
		Getenv: os.Getenv,
	}
}

// exitError carries an exit code other than 1 through cobra. A nil err
// means "exit with code, print nothing more".
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// withCode wraps err (which may be nil) so Run exits with code.
func withCode(code int, err error) error { return &exitError{code: code, err: err} }

// Run executes the command line args and returns the process exit code.
// Errors are printed once, to Err, without a usage dump.
func Run(ctx context.Context, args []string, env *Env) int {
	root := newRootCmd(env)
	root.SetArgs(args)
	root.SetIn(env.In)
	root.SetOut(env.Out)
	root.SetErr(env.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	code := ExitError
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		err = ee.err
	} else if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		// Ctrl-C before any change was made (while planning): the
		// command stopped because it was asked to, not because it failed.
		code = ExitInterrupted
		err = fmt.Errorf("interrupted before any change was made (%w)", err)
	}
	if err != nil {
		msg := err.Error()
		if !strings.HasPrefix(msg, "Error") {
			msg = "Error: " + msg
		}
		fmt.Fprintln(env.Err, msg)
	}
	return code
}

func newRootCmd(env *Env) *cobra.Command {
	root := &cobra.Command{
		Use:   "lkfleet",
		Short: "Provision fleets of LinuxKit machines on Packet bare metal",
		Long: `lkfleet turns a declarative fleet file into running LinuxKit machines on
Packet (Equinix Metal) compatible bare metal: plan shows what would change,
apply makes the project match the file.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	for _, add := range commands {
		root.AddCommand(add(env))
	}
	return root
}

// commands lists the constructors of every subcommand; each command's file
// appends its constructor in an init function.
var commands []func(*Env) *cobra.Command
