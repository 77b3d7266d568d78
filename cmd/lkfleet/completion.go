package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

func init() { commands = append(commands, newCompletionCmd) }

func newCompletionCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `completion prints a completion script for your shell, e.g.

  source <(lkfleet completion bash)
  lkfleet completion zsh > "${fpath[1]}/_lkfleet"
  lkfleet completion fish > ~/.config/fish/completions/lkfleet.fish

Bash needs the bash-completion package (apt-get install bash-completion,
brew install bash-completion@2) loaded in the shell: the script uses its
helpers. Besides commands and flags, values complete too: -o, --wait,
and from the fleet file given with -f (fleet.yml by default) the groups,
slots and hostnames of --rebuild, --replace, --device and console.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(env.Out, true)
			case "zsh":
				return root.GenZshCompletion(env.Out)
			case "fish":
				return root.GenFishCompletion(env.Out, true)
			case "powershell":
				return root.GenPowerShellCompletionWithDesc(env.Out)
			}
			return fmt.Errorf("unknown shell %q (bash, zsh, fish or powershell)", args[0])
		},
	}
}

// waitModes are the values of apply --wait, for messages and completion.
var waitModes = []string{"active", "booted", "none"}

// registerCompletions adds value completion to the flags and arguments of
// every command under root. It is done here, in one place, so that each
// value list has one source (outputFormats, waitModes, the fleet file).
func registerCompletions(root *cobra.Command, env *Env) {
	fixed := func(values []string) cobra.CompletionFunc {
		return cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp)
	}
	for _, c := range root.Commands() {
		f := c.Flags()
		if f.Lookup("file") != nil {
			_ = c.RegisterFlagCompletionFunc("file", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
				return []string{"yml", "yaml"}, cobra.ShellCompDirectiveFilterFileExt
			})
		}
		if f.Lookup("output") != nil {
			if _, ok := outputFormats[c.Name()]; ok {
				_ = c.RegisterFlagCompletionFunc("output", fixed(shownFormats(c.Name())))
			}
		}
		if f.Lookup("wait") != nil {
			_ = c.RegisterFlagCompletionFunc("wait", fixed(waitModes))
		}
		if f.Lookup("rebuild") != nil {
			_ = c.RegisterFlagCompletionFunc("rebuild", fleetNames(env, true, true, false))
		}
		if f.Lookup("replace") != nil {
			_ = c.RegisterFlagCompletionFunc("replace", fleetNames(env, false, true, false))
		}
		if f.Lookup("device") != nil {
			_ = c.RegisterFlagCompletionFunc("device", fleetNames(env, false, true, true))
		}
		if c.Name() == "console" {
			names := fleetNames(env, false, true, true)
			c.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
				if len(args) > 0 {
					return nil, cobra.ShellCompDirectiveNoFileComp
				}
				return names(cmd, args, toComplete)
			}
		}
	}
}

// fleetNames completes from the fleet file named by the command's -f:
// "all" and group names, slots, and hostnames, as asked. Completion makes
// no network calls: the names come from the file alone.
func fleetNames(env *Env, groups, slots, hostnames bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		devs, groupNames := completionFleet(env, cmd)
		var out []string
		if groups {
			out = append(out, "all")
			out = append(out, groupNames...)
		}
		for _, d := range devs {
			if slots {
				out = append(out, d.Slot)
			}
			if hostnames {
				out = append(out, d.Hostname)
			}
		}
		var matching []string
		for _, v := range out {
			if strings.HasPrefix(v, toComplete) && !slices.Contains(matching, v) {
				matching = append(matching, v)
			}
		}
		return matching, cobra.ShellCompDirectiveNoFileComp
	}
}

// completionFleet loads the command's fleet file for completion and
// returns its devices and group names; nothing when it does not load.
// The project does not matter for names, and a ${VAR} the shell does not
// set (the simulator's URL, say) gets a placeholder rather than failing
// the file, since names never come from the environment.
func completionFleet(env *Env, cmd *cobra.Command) ([]spec.Device, []string) {
	path, _ := cmd.Flags().GetString("file")
	if path == "" || path == "-" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil
	}
	dir := filepath.Dir(path)
	opts := spec.LoadOptions{
		Project: "00000000-0000-4000-8000-000000000000",
		Getenv: func(k string) string {
			if v := env.Getenv(k); v != "" {
				return v
			}
			return "http://unset.invalid"
		},
		ReadFile: func(p string) ([]byte, error) {
			if !filepath.IsAbs(p) {
				p = filepath.Join(dir, p)
			}
			return os.ReadFile(p)
		},
	}
	f, err := spec.Load(path, data, opts)
	if err != nil {
		return nil, nil
	}
	devs, err := spec.Expand(f)
	if err != nil {
		return nil, nil
	}
	groups := make([]string, 0, len(f.Groups))
	for _, g := range f.Groups {
		groups = append(groups, g.Name)
	}
	return devs, groups
}
