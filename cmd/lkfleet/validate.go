package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/internal/fileinput"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

func init() { commands = append(commands, newValidateCmd) }

// fleetFlags are the flags of every command that reads a fleet file.
type fleetFlags struct {
	File    string
	Project string
	// identityOnly is set (not by a flag) by commands that need only the
	// fleet's name and project: see spec.LoadOptions.IdentityOnly.
	identityOnly bool
}

// addFleetFlags declares -f/--file and --project on cmd.
func addFleetFlags(cmd *cobra.Command, ff *fleetFlags) {
	cmd.Flags().StringVarP(&ff.File, "file", "f", "fleet.yml", "fleet file to read (- reads standard input)")
	cmd.Flags().StringVar(&ff.Project, "project", "", "project UUID (overrides the fleet file's project)")
}

// loadFleet reads and validates the fleet file named by ff. ${VAR} expands
// from env, and ipxe_template paths resolve against the fleet file's
// directory. When the file has problems it prints each on its own line
// to env.Err and returns an error that makes Run exit 1 without printing
// anything more, so callers just return it.
func loadFleet(env *Env, ff fleetFlags) (*spec.Fleet, error) {
	data, err := readFleetFile(env, ff.File)
	if err != nil {
		return nil, fmt.Errorf("read fleet file: %w", err)
	}
	name, dir := ff.File, filepath.Dir(ff.File)
	if ff.File == "-" {
		// Problems name the stream; templates resolve against the
		// working directory.
		name, dir = "<stdin>", "."
	}
	f, err := spec.Load(name, data, spec.LoadOptions{
		Getenv:       env.Getenv,
		Project:      ff.Project,
		IdentityOnly: ff.identityOnly,
		ReadFile: func(p string) ([]byte, error) {
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			return fileinput.Read(p, fileinput.MaxTemplateFile)
		},
	})
	var problems spec.Errors
	if errors.As(err, &problems) {
		for _, p := range problems {
			fmt.Fprintln(env.Err, p.Error())
		}
		return nil, withCode(ExitError, nil)
	}
	return f, err
}

// readFleetFile reads the fleet file at path within the fleet file's size
// limit; "-" is standard input, read once and kept, since a command reads
// its fleet file more than once.
func readFleetFile(env *Env, path string) ([]byte, error) {
	if path != "-" {
		return fileinput.Read(path, fileinput.MaxFleetFile)
	}
	if !env.stdinRead {
		env.stdin, env.stdinErr = io.ReadAll(io.LimitReader(env.In, fileinput.MaxFleetFile+1))
		env.stdinRead = true
		switch {
		case env.stdinErr != nil:
			env.stdinErr = fmt.Errorf("read standard input: %w", env.stdinErr)
		case len(env.stdin) > fileinput.MaxFleetFile:
			env.stdin, env.stdinErr = nil, fmt.Errorf("standard input: %w: more than the %s allowed", fileinput.ErrTooLarge, fileinput.Size(fileinput.MaxFleetFile))
		}
	}
	return env.stdin, env.stdinErr
}

func newValidateCmd(env *Env) *cobra.Command {
	var ff fleetFlags
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check a fleet file and report every problem",
		Long: `Validate reads the fleet file, checks every key and renders every device's
hostname, then prints a one-line summary. Problems are printed one per line
as FILE:LINE:COL: PATH: message, all of them, and the exit status is 1.
Validate makes no network calls.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			f, err := loadFleet(env, ff)
			if err != nil {
				return err
			}
			devs, err := spec.Expand(f)
			if err != nil {
				return fmt.Errorf("validate %s: %w", ff.File, err)
			}
			zones := 0
			for _, w := range f.Rollout.Waves {
				zones += len(w)
			}
			_, err = fmt.Fprintf(env.Out, "%s: ok — %s in %s, %s\n", f.File,
				nounCount(len(devs), "device"), nounCount(len(f.Groups), "group"), nounCount(zones, "zone"))
			return err
		},
	}
	addFleetFlags(cmd, &ff)
	return cmd
}

// nounCount formats a count with its noun: "1 device", "9 devices".
func nounCount(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
