package main

import (
	"cmp"
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
	fleet    fleetFlags
	api      apiFlags
	output   string
	watch    bool
	interval time.Duration
	lock     lockFlags
}

func newStatusCmd(env *Env) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "List the fleet's devices",
		Long: `status lists every device of the fleet: slot, hostname, id, state, zone,
machine, IPs, the image it boots (from its rev tag) and whether it booted,
and its age; -o wide adds the boot reason and the release. Devices of other
owners whose hostname clashes are flagged.

When an image's cmdline cannot be fetched, only that image's devices are
affected: their image shows as unknown and a warning names the URL on
stderr; the exit code stays 0 (the listing itself is right).

--watch lists again every --interval: in place on a terminal, as repeated
tables otherwise, one device listing and one read of the fleet's lease
(whose record says which rebuilds finished) per refresh. Ctrl-C ends it at once
with exit 0 (stopping a watch is its normal end).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.watch {
				return watchStatus(cmd.Context(), env, o) // status_watch.go
			}
			return runStatus(cmd.Context(), env, o, time.Now())
		},
	}
	addFleetFlags(cmd, &o.fleet)
	addAPIFlags(cmd, &o.api)
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text, wide or json")
	cmd.Flags().BoolVarP(&o.watch, "watch", "w", false, "list again every --interval until Ctrl-C")
	cmd.Flags().DurationVar(&o.interval, "interval", 2*time.Second, "time between listings with --watch")
	addLockFlags(cmd, &o.lock, false) // the lease's record settles rebuilds (lock.go)
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
	// ImageUnknown: the cmdline of the device's image could not be
	// fetched, so whether it is current is not known (not "outdated").
	ImageUnknown bool `json:"image_unknown,omitempty"`
	// BootReason is the device's last word on its boot: its newest
	// event's message (a user state or a provisioning step).
	BootReason string `json:"boot_reason,omitempty"`
	// TerminationTime is when the service terminates an outbid spot device.
	TerminationTime string `json:"termination_time,omitempty"`
}

// statusView is what status works out once from the fleet file: which
// image each current rev stands for, and the images it could not render.
type statusView struct {
	fleet     *spec.Fleet
	wantHost  map[string]string // hostname -> slot
	slotImage map[string]string // slot -> image key
	revImage  map[string]string // current rev -> image key
	unknown   map[string]bool   // image keys whose cmdline could not be fetched
	// runs settle pending markers: a device whose rebuild is unfinished
	// shows the rev it may still run, never the new one (planner.Marker).
	runs planner.Runs
}

func runStatus(ctx context.Context, env *Env, o *statusOptions, now time.Time) error {
	l, err := listFleet(ctx, env, o.fleet, o.api)
	if err != nil {
		return err
	}
	defer l.client.Close()
	v, err := newStatusView(ctx, env, l.fleet, l.client)
	if err != nil {
		return err
	}
	st := readLease(ctx, env, l.fleet, l.client, o.lock)
	st.warn(env)
	v.runs = st.runs
	// Foreign devices whose hostname is one of the fleet's.
	all, err := l.client.ListAll(ctx)
	if err != nil {
		return err
	}
	return writeStatus(env, o.output, l.fleet.Name, v.rows(l.live, all, now), now)
}

// newStatusView renders the desired devices image by image, so that one
// image whose cmdline cannot be fetched leaves the others' devices
// shown as they are; a warning on stderr names the failure (and its URL).
func newStatusView(ctx context.Context, env *Env, fleet *spec.Fleet, client *packet.Client) (*statusView, error) {
	desired, err := spec.Expand(fleet)
	if err != nil {
		return nil, err
	}
	v := &statusView{fleet: fleet, wantHost: map[string]string{}, slotImage: map[string]string{},
		revImage: map[string]string{}, unknown: map[string]bool{}}
	var keys []string
	byImage := map[string][]spec.Device{}
	for _, d := range desired {
		v.wantHost[d.Hostname] = d.Slot
		v.slotImage[d.Slot] = d.Image.Key
		if byImage[d.Image.Key] == nil {
			keys = append(keys, d.Image.Key)
		}
		byImage[d.Image.Key] = append(byImage[d.Image.Key], d)
	}
	arches := statusArches(ctx, client)
	for _, key := range keys {
		rendered, err := pipeline.Render(ctx, pipeline.HTTPClient(), images(), byImage[key], arches)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			v.unknown[key] = true
			fmt.Fprintf(env.Err, "Warning: image %s: %v; its devices' image is shown as unknown\n", key, err)
			continue
		}
		for _, d := range rendered {
			v.revImage[d.Rev] = d.Image.Key
		}
	}
	return v, nil
}

// rows builds the table from the fleet's live devices and the whole
// project's (for hostname clashes), sorted by slot.
func (v *statusView) rows(live, all []planner.Live, now time.Time) []statusRow {
	var rows []statusRow
	for _, l := range live {
		if planner.Ignored(l.State) {
			continue
		}
		r := row(l, now)
		r.Rev = l.BootedRev(v.runs)
		r.Image, r.Current = v.revImage[r.Rev], v.revImage[r.Rev] != ""
		if m, ok := l.Marker(); ok && l.Unfinished(v.runs) {
			r.Note = fmt.Sprintf("rebuild to rev %s unfinished: its reboot or reinstall may not have been sent (the next apply rebuilds it)", m.To)
		}
		r.ImageUnknown = !r.Current && v.unknown[v.slotImage[r.Slot]]
		r.Release = runningRelease(v.fleet, l)
		rows = append(rows, r)
	}
	sort.SliceStable(rows, func(i, j int) bool { return spec.CompareSlots(rows[i].Slot, rows[j].Slot) < 0 })
	for _, l := range all {
		if l.Fleet() == v.fleet.Name || planner.Ignored(l.State) {
			continue
		}
		if slot, ok := v.wantHost[l.Hostname]; ok {
			r := row(l, now)
			r.Foreign = true
			r.Note = "not owned by fleet " + v.fleet.Name + "; hostname clashes with slot " + slot
			rows = append(rows, r)
		}
	}
	return rows
}

// writeStatus prints the rows as JSON or as a table (wide: with the boot
// reason and release columns) with notes about foreign devices.
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
	wide := output == "wide"
	head := []string{"SLOT", "HOSTNAME", "ID", "STATE", "ZONE", "MACHINE", "IPS", "IMAGE", "BOOTED", "AGE"}
	if wide {
		head = append(head, "RELEASE", "BOOT REASON")
	}
	t := ui.NewTable(env.Out, head...)
	var notes []string
	for _, r := range rows {
		img, slot := r.Image, r.Slot
		switch {
		case r.Foreign:
			img, slot = "-", "!"
			notes = append(notes, fmt.Sprintf("! %s (%s) is %s", r.Hostname, r.ID, r.Note))
		case r.ImageUnknown:
			img = "rev " + r.Rev + " (unknown)"
		case img == "":
			img = "rev " + r.Rev + " (outdated)"
		}
		if !r.Foreign && r.Note != "" {
			notes = append(notes, fmt.Sprintf("%s (%s): %s", r.Hostname, r.ID, r.Note))
		}
		cells := []string{slot, r.Hostname, r.ID, r.shownState(), r.Zone, r.Machine, strings.Join(r.IPs, ","), img, orDash(r.Booted), since(now, parseTime(r.CreatedAt))}
		if wide {
			cells = append(cells, orDash(r.Release), orDash(r.BootReason))
		} else {
			cells[7] = withRelease(img, r.Release)
		}
		t.Row(cells...)
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
		BootReason: cmp.Or(l.LastEvent, l.UserStateBody),
	}
	if r.IPs == nil {
		r.IPs = []string{}
	}
	if !l.CreatedAt.IsZero() {
		r.CreatedAt = l.CreatedAt.UTC().Format(time.RFC3339)
	}
	if !l.TerminationTime.IsZero() {
		r.TerminationTime = l.TerminationTime.UTC().Format(time.RFC3339)
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
