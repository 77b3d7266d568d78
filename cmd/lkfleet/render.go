package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/pkg/ipxe"
	"github.com/lkfleet/lkfleet/pkg/pipeline"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

func init() { commands = append(commands, newRenderCmd) }

// renderOptions are the flags of lkfleet render.
type renderOptions struct {
	fleet  fleetFlags
	device string
	out    string
}

func newRenderCmd(env *Env) *cobra.Command {
	var o renderOptions
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Print or write the iPXE script of each device",
		Long: `Render prints the iPXE script each device boots, exactly as lkfleet sends it.

  --device HOST   prints that device's script (HOST is a hostname or a slot)
                  and nothing else, so the output can be served as is
  --out DIR       writes DIR/<hostname>.ipxe for every device (or only
                  --device), for fleets that serve scripts from ipxe_script_url
  neither         prints every device's script in slot order, each after a
                  "# <hostname> (<slot>)" header line

Cmdlines that the fleet file does not give are fetched from the image's
base_url. Render does not contact the API and does not check the kernels
and initrds (plan does); the architecture comes from the image's arch or
the machine type's name.`,
		Example: `  lkfleet render -f lab.yml --device web-ams1-1
  lkfleet render -f lab.yml --out /srv/boot`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return runRender(c.Context(), env, o)
		},
	}
	addFleetFlags(cmd, &o.fleet)
	cmd.Flags().StringVar(&o.device, "device", "", "render only the device with this hostname or slot")
	cmd.Flags().StringVar(&o.out, "out", "", "write <hostname>.ipxe files into this directory instead of printing")
	return cmd
}

func runRender(ctx context.Context, env *Env, o renderOptions) error {
	fleet, err := loadFleet(env, o.fleet)
	if err != nil {
		return err
	}
	devs, err := spec.Expand(fleet)
	if err != nil {
		return fmt.Errorf("render %s: %w", o.fleet.File, err)
	}
	if o.device != "" {
		// Select before rendering: only this device's cmdline is fetched.
		d, err := findDevice(fleet.Name, devs, o.device)
		if err != nil {
			return err
		}
		devs = []spec.Device{d}
	}
	// No catalogue: render stays off the API (see the command's help).
	devs, err = pipeline.Render(ctx, pipeline.HTTPClient(), images(), devs, nil)
	if err != nil {
		return err
	}
	switch {
	case o.out != "":
		paths, err := ipxe.WriteScripts(o.out, devs)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(env.Out, "wrote %s to %s\n", nounCount(len(paths), "script"), o.out)
		return err
	case o.device != "":
		_, err = fmt.Fprint(env.Out, devs[0].Script)
		return err
	case len(devs) == 0:
		_, err = fmt.Fprintf(env.Err, "fleet %q has no devices\n", fleet.Name)
		return err
	}
	var b strings.Builder
	for i, d := range devs {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "# %s (%s)\n%s", d.Hostname, d.Slot, d.Script)
	}
	_, err = fmt.Fprint(env.Out, b.String())
	return err
}

// findDevice returns the device whose hostname or slot is name.
func findDevice(fleet string, devs []spec.Device, name string) (spec.Device, error) {
	for _, d := range devs {
		if d.Hostname == name || d.Slot == name {
			return d, nil
		}
	}
	const shown = 5
	names := make([]string, 0, shown)
	for i, d := range devs {
		if i == shown {
			names = append(names, fmt.Sprintf("... %d more", len(devs)-shown))
			break
		}
		names = append(names, d.Hostname)
	}
	if len(names) == 0 {
		return spec.Device{}, fmt.Errorf("render: no device %q: fleet %q has no devices", name, fleet)
	}
	return spec.Device{}, fmt.Errorf("render: no device %q in fleet %q (devices: %s)", name, fleet, strings.Join(names, ", "))
}
