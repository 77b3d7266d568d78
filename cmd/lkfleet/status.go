package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/internal/ui"
	"github.com/lkfleet/lkfleet/pkg/packet"
	"github.com/lkfleet/lkfleet/pkg/pipeline"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

func init() { commands = append(commands, newStatusCmd) }

type statusOptions struct {
	fleet  fleetFlags
	api    apiFlags
	output string
}

func newStatusCmd(env *Env) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the fleet's devices",
		Long: `status lists every device of the fleet: slot, hostname, id, state, zone,
machine, IPs, the image it boots (from its rev tag) and whether it booted,
and its age. Devices of other owners whose hostname clashes are flagged.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runStatus(cmd.Context(), env, o, time.Now())
		},
	}
	addFleetFlags(cmd, &o.fleet)
	addAPIFlags(cmd, &o.api)
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

// statusRow is one device in `status -o json`.
type statusRow struct {
	Slot      string   `json:"slot"`
	Hostname  string   `json:"hostname"`
	ID        string   `json:"id"`
	State     string   `json:"state"`
	Zone      string   `json:"zone"`
	Machine   string   `json:"machine"`
	IPs       []string `json:"ips"`
	Rev       string   `json:"rev"`
	Image     string   `json:"image"`
	Current   bool     `json:"current"`
	Booted    string   `json:"booted"`
	CreatedAt string   `json:"created_at"`
	Foreign   bool     `json:"foreign,omitempty"`
	Release   string   `json:"release,omitempty"` // of an image from lkfleet push; release.go
	Note      string   `json:"note,omitempty"`
}

func runStatus(ctx context.Context, env *Env, o *statusOptions, now time.Time) error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("unknown output format %q (text or json)", o.output)
	}
	l, err := listFleet(ctx, env, o.fleet, o.api)
	if err != nil {
		return err
	}
	defer l.client.Close()
	fleet, client, live := l.fleet, l.client, l.live
	// Which image each current rev stands for. Rendering needs the
	// cmdlines; when they cannot be fetched, revs are shown bare.
	desired, err := spec.Expand(fleet)
	if err != nil {
		return err
	}
	wantHost := make(map[string]string, len(desired))
	for _, d := range desired {
		wantHost[d.Hostname] = d.Slot
	}
	revImage := map[string]string{}
	if rendered, err := pipeline.Render(ctx, pipeline.HTTPClient(), images(), desired, statusArches(ctx, client)); err == nil {
		for _, d := range rendered {
			revImage[d.Rev] = d.Image.Key
		}
	}
	var rows []statusRow
	for _, l := range live {
		if planner.Ignored(l.State) {
			continue
		}
		r := row(l, now)
		r.Image, r.Current = revImage[l.Rev()], revImage[l.Rev()] != ""
		r.Release = runningRelease(fleet, l)
		rows = append(rows, r)
	}
	sort.SliceStable(rows, func(i, j int) bool { return spec.CompareSlots(rows[i].Slot, rows[j].Slot) < 0 })
	// Foreign devices whose hostname is one of the fleet's.
	all, err := client.ListAll(ctx)
	if err != nil {
		return err
	}
	for _, l := range all {
		if l.Fleet() == fleet.Name || planner.Ignored(l.State) {
			continue
		}
		if slot, ok := wantHost[l.Hostname]; ok {
			r := row(l, now)
			r.Foreign = true
			r.Note = "not owned by fleet " + fleet.Name + "; hostname clashes with slot " + slot
			rows = append(rows, r)
		}
	}
	return writeStatus(env, o.output, fleet.Name, rows, now)
}

// writeStatus prints the rows as JSON or as a table with notes about
// foreign devices.
func writeStatus(env *Env, output, fleet string, rows []statusRow, now time.Time) error {
	if output == "json" {
		enc := json.NewEncoder(env.Out)
		enc.SetIndent("", "  ")
		if rows == nil {
			rows = []statusRow{}
		}
		return enc.Encode(rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintf(env.Out, "Fleet %s has no devices.\n", fleet)
		return err
	}
	t := ui.NewTable(env.Out, "SLOT", "HOSTNAME", "ID", "STATE", "ZONE", "MACHINE", "IPS", "IMAGE", "BOOTED", "AGE")
	var notes []string
	for _, r := range rows {
		img, slot := r.Image, r.Slot
		switch {
		case r.Foreign:
			img, slot = "-", "!"
			notes = append(notes, fmt.Sprintf("! %s (%s) is %s", r.Hostname, r.ID, r.Note))
		case img == "":
			img = "rev " + r.Rev + " (outdated)"
		}
		img = withRelease(img, r.Release)
		t.Row(slot, r.Hostname, r.ID, r.State, r.Zone, r.Machine, strings.Join(r.IPs, ","), img, orDash(r.Booted), since(now, parseTime(r.CreatedAt)))
	}
	if err := t.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintln(env.Out)
		for _, n := range notes {
			fmt.Fprintln(env.Out, n)
		}
	}
	return nil
}

func row(l planner.Live, now time.Time) statusRow {
	zone := l.Facility
	if zone == "" {
		zone = l.Metro
	}
	r := statusRow{
		Slot: l.Slot(), Hostname: l.Hostname, ID: l.ID, State: l.State, Zone: zone,
		Machine: l.Machine, IPs: l.IPs, Rev: l.Rev(), Booted: l.UserState,
	}
	if r.IPs == nil {
		r.IPs = []string{}
	}
	if !l.CreatedAt.IsZero() {
		r.CreatedAt = l.CreatedAt.UTC().Format(time.RFC3339)
	}
	return r
}

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339, s)
	return t
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// statusArches is the catalogue's architecture per machine, nil when the
// catalogue cannot be read (status then shows revs without image names
// for devices whose architecture it would have had to guess).
func statusArches(ctx context.Context, c *packet.Client) map[string]string {
	cat, err := c.Catalogue(ctx)
	if err != nil {
		return nil
	}
	return pipeline.Arches(cat)
}
