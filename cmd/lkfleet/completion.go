package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newCompletionCmd) }

func newCompletionCmd(env *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "Print a shell completion script",
		Long: `completion prints a completion script for your shell, e.g.

  source <(lkfleet completion bash)
  lkfleet completion zsh > "${fpath[1]}/_lkfleet"
  lkfleet completion fish > ~/.config/fish/completions/lkfleet.fish`,
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
