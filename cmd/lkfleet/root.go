package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
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

	// stdin holds what `-f -` read from In: the fleet is read twice per
	// command (parsed, then hashed), the stream only once.
	stdin     []byte
	stdinErr  error
	stdinRead bool
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
	if env.OutTTY && env.Getenv("TERM") == "dumb" {
		// A dumb terminal cannot move the cursor: it gets the plain
		// lines a log gets (docs/output.md), and no colours.
		e := *env
		e.OutTTY = false
		env = &e
	}
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
		Version:       Version,
		// Flags are checked before any file is read or call is made,
		// with one wording for every command.
		PersistentPreRunE: func(c *cobra.Command, _ []string) error { return checkFlags(c) },
	}
	root.SetVersionTemplate(versionLine())
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	for _, add := range commands {
		root.AddCommand(add(env))
	}
	for _, c := range root.Commands() {
		explainArgs(c)
	}
	registerCompletions(root, env)
	return root
}

// outputFormats are the values -o/--output takes, per command. The first
// ones are shown in messages and completions; later ones are accepted
// aliases ("text" for plain progress).
var outputFormats = map[string][]string{
	"apply":   {"auto", "tty", "plain", "json", "text"},
	"destroy": {"auto", "tty", "plain", "json", "text"},
	"plan":    {"text", "json"},
	"push":    {"auto", "tty", "plain", "json", "text"},
	"status":  {"text", "wide", "json"},
}

// shownFormats are the values of -o named to people for command.
func shownFormats(command string) []string {
	v := outputFormats[command]
	if command == "apply" || command == "destroy" || command == "push" {
		return v[:4]
	}
	return v
}

// checkFlags refuses flag values no command can use: an unknown -o, and
// numbers outside their range (a zero parallelism would never start, a
// negative timeout would stop at once).
func checkFlags(c *cobra.Command) error {
	f := c.Flags()
	var errs []error
	if fl := f.Lookup("output"); fl != nil {
		if formats, ok := outputFormats[c.Name()]; ok && !slices.Contains(formats, fl.Value.String()) {
			errs = append(errs, fmt.Errorf("-o/--output %q is not an output of %s; want %s", fl.Value.String(), c.CommandPath(), orList(shownFormats(c.Name()))))
		}
	}
	if v, err := f.GetString("wait"); err == nil && !slices.Contains(waitModes, v) {
		errs = append(errs, fmt.Errorf("--wait %q is not a wait mode; want %s", v, orList(waitModes)))
	}
	if v, err := f.GetInt("parallelism"); err == nil && v < 1 {
		errs = append(errs, fmt.Errorf("--parallelism must be at least 1, got %d", v))
	}
	if v, err := f.GetInt("failed-retries"); err == nil && v < 0 {
		errs = append(errs, fmt.Errorf("--failed-retries must not be negative (0: never retry), got %d", v))
	}
	if v, err := f.GetDuration("timeout"); err == nil && v < 0 {
		errs = append(errs, fmt.Errorf("--timeout must not be negative (0: no limit), got %s", v))
	}
	if v, err := f.GetDuration("poll-interval"); err == nil && v <= 0 {
		errs = append(errs, fmt.Errorf("--poll-interval must be positive, got %s", v))
	}
	if v, err := f.GetDuration("lock-timeout"); err == nil && v < 0 {
		errs = append(errs, fmt.Errorf("--lock-timeout must not be negative (0: exit 1 at once when the fleet is locked), got %s", v))
	}
	if v, err := f.GetFloat64("rate"); err == nil && v < 0 {
		errs = append(errs, fmt.Errorf("--rate must not be negative (0: only the server's limit), got %g", v))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w\n(see '%s --help')", err, c.CommandPath())
	}
	return nil
}

// orList joins values as "a, b or c".
func orList(v []string) string {
	if len(v) < 2 {
		return strings.Join(v, "")
	}
	return strings.Join(v[:len(v)-1], ", ") + " or " + v[len(v)-1]
}

// explainArgs replaces the argument checks of c and its subcommands by
// ones that say, in lkfleet's words, what the command takes and show its
// usage line (cobra's own say "accepts 1 arg(s), received 0", or "unknown
// command" for an argument given to a command that takes none).
func explainArgs(c *cobra.Command) {
	for _, sub := range c.Commands() {
		explainArgs(sub)
	}
	check := c.Args
	if check == nil {
		return
	}
	c.Args = func(cmd *cobra.Command, args []string) error {
		if check(cmd, args) == nil {
			return nil
		}
		return argsError(cmd, args)
	}
}

// argsError says what cmd takes, from its Use line ("console
// HOSTNAME|SLOT", "apply [PLANFILE]", "plan").
func argsError(cmd *cobra.Command, args []string) error {
	want := strings.TrimSpace(strings.TrimPrefix(cmd.Use, cmd.Name()))
	path := cmd.CommandPath()
	var msg string
	switch {
	case want == "" && len(args) > 0:
		msg = fmt.Sprintf("%s takes no arguments, got %q", path, strings.Join(args, " "))
		if len(args) == 1 && (strings.HasSuffix(args[0], ".yml") || strings.HasSuffix(args[0], ".yaml")) {
			msg += fmt.Sprintf("; did you mean -f %s?", args[0])
		}
	case strings.HasPrefix(want, "["):
		msg = fmt.Sprintf("%s takes at most one argument, %s; got %d (%s)", path, strings.Trim(want, "[]"), len(args), strings.Join(args, " "))
	case len(args) == 0:
		msg = fmt.Sprintf("%s needs an argument: %s", path, want)
	default:
		msg = fmt.Sprintf("%s takes one argument, %s; got %d (%s)", path, want, len(args), strings.Join(args, " "))
	}
	return fmt.Errorf("%s\nUsage: %s", msg, cmd.UseLine())
}

// commands lists the constructors of every subcommand; each command's file
// appends its constructor in an init function.
var commands []func(*Env) *cobra.Command
