package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/lkfleet/lkfleet/internal/ui"
	"github.com/lkfleet/lkfleet/pkg/imagestore"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

func init() { commands = append(commands, newPushCmd) }

type pushOptions struct {
	fleet       fleetFlags
	api         apiFlags
	from        string
	prune       int
	autoApprove bool
	output      string
	verify      string
	noLatest    bool
	// partSize is the multipart part size (tests make it small).
	partSize int64
	// now stamps manifests (tests pin it); nil: time.Now.
	now func() time.Time
}

func newPushCmd(env *Env) *cobra.Command {
	o := &pushOptions{prune: -1}
	cmd := &cobra.Command{
		Use:   "push [IMAGE] --from DIR",
		Short: "Upload a kernel+initrd build to the image's store and mirrors as a release",
		Long: `push uploads what 'linuxkit build -format kernel+initrd' wrote in DIR
(NAME-kernel, NAME-initrd.img, NAME-cmdline) to the image's store and to
every mirror in parallel, as a content-addressed release: objects under
PREFIX/RELEASE/, the manifest written last, then the latest pointer. The
same build pushed twice uploads nothing. Each location is then verified
over its public URL, as devices will read it.

--prune N then deletes, on every location, the releases older than the
newest N that no device of the fleet runs (read from the devices' boot
scripts: this needs the API token), after showing them and asking.

IMAGE is a key of the fleet file's images; it may be omitted when only
one image has a store. Storage credentials come only from the standard AWS
chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared
config files, SSO, instance roles).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			image := ""
			if len(args) == 1 {
				image = args[0]
			}
			return runPush(cmd.Context(), env, o, image)
		},
	}
	addFleetFlags(cmd, &o.fleet)
	addAPIFlags(cmd, &o.api)
	cmd.Flags().StringVar(&o.from, "from", "", "directory holding the linuxkit kernel+initrd build")
	cmd.Flags().IntVar(&o.prune, "prune", -1, "after pushing, delete releases older than the newest N that no device runs")
	cmd.Flags().BoolVar(&o.autoApprove, "auto-approve", false, "prune without asking for confirmation")
	cmd.Flags().StringVarP(&o.output, "output", "o", "auto", "output: auto, tty, plain or json")
	cmd.Flags().StringVar(&o.verify, "verify", "quick", "check after pushing: quick (HEAD: size and ETag), full (read every byte, SHA-256) or none")
	cmd.Flags().BoolVar(&o.noLatest, "no-latest", false, "do not move the latest pointer to this release")
	return cmd
}

func runPush(ctx context.Context, env *Env, o *pushOptions, imageKey string) error {
	mode, err := ui.ParseMode(o.output, env.OutTTY)
	if err != nil {
		return err
	}
	depth, verify := imagestore.Quick, true
	switch o.verify {
	case "quick":
	case "full":
		depth = imagestore.Full
	case "none":
		verify = false
	default:
		return fmt.Errorf("--verify %q: want quick, full or none", o.verify)
	}
	if o.from == "" && o.prune < 0 {
		return errors.New("nothing to do: give --from DIR to push a build, or --prune N")
	}
	fleet, err := loadFleet(env, o.fleet)
	if err != nil {
		return err
	}
	img, err := pushImage(fleet, imageKey)
	if err != nil {
		return err
	}
	out := newPushOutput(env, mode)
	var stores []*imagestore.Store
	for _, loc := range img.Store.Locations() {
		s, err := imagestore.Open(ctx, loc, imagestore.Options{PartSize: o.partSize})
		if err != nil {
			return fmt.Errorf("push %s: %w", img.Key, err)
		}
		stores = append(stores, s)
	}
	if o.from != "" {
		if err := pushBuild(ctx, out, o, img, stores, depth, verify); err != nil {
			return err
		}
	}
	if o.prune >= 0 {
		return pruneReleases(ctx, env, out, o, fleet, img, stores)
	}
	return nil
}

// pushImage picks the image to push: the one named, else the only image
// with a store.
func pushImage(fleet *spec.Fleet, key string) (spec.Image, error) {
	var withStore []string
	for _, im := range fleet.Images {
		if im.Store != nil {
			withStore = append(withStore, im.Key)
		}
		if key != "" && im.Key == key {
			if im.Store == nil {
				return im, fmt.Errorf("image %s has no store in %s: add store (and mirrors) to push it (see docs/fleet-file.md)", key, fleet.File)
			}
			return im, nil
		}
	}
	switch {
	case key != "":
		keys := make([]string, len(fleet.Images))
		for i, im := range fleet.Images {
			keys[i] = im.Key
		}
		return spec.Image{}, fmt.Errorf("unknown image %q in %s (known: %s)", key, fleet.File, strings.Join(keys, ", "))
	case len(withStore) == 1:
		for _, im := range fleet.Images {
			if im.Key == withStore[0] {
				return im, nil
			}
		}
	case len(withStore) == 0:
		return spec.Image{}, fmt.Errorf("no image of %s has a store: add one to push (see docs/fleet-file.md)", fleet.File)
	}
	return spec.Image{}, fmt.Errorf("several images have a store (%s): name the one to push", strings.Join(withStore, ", "))
}

func pushBuild(ctx context.Context, out *pushOutput, o *pushOptions, img spec.Image, stores []*imagestore.Store, depth imagestore.Depth, verify bool) error {
	b, err := imagestore.ReadBuild(o.from, img.Name)
	if err != nil {
		return err
	}
	out.begin(b, len(stores))
	results, err := imagestore.Push(ctx, b, stores, imagestore.PushOptions{Progress: out.event, Now: o.now, SetLatest: !o.noLatest})
	out.wait()
	if err != nil && ctx.Err() != nil {
		return withCode(ExitInterrupted, fmt.Errorf("push of release %s interrupted: a location without its manifest has no release yet; what was uploaded is reused when you run the same push again", b.Release))
	}
	if err != nil {
		return err
	}
	for _, r := range results {
		out.result(r)
	}
	if verify {
		c := imagestore.NewChecker(&http.Client{}, depth)
		var targets []imagestore.Target
		for _, s := range stores {
			targets = append(targets, imagestore.ReleaseTargets(s.Loc, b.Release, img.Name)...)
		}
		if err := c.Verify(ctx, targets); err != nil {
			return fmt.Errorf("release %s was pushed but does not verify over its public URLs: %w", b.Release, err)
		}
		out.note(fmt.Sprintf("Verified release %s on %d location(s) over their public URLs (%s).", b.Release, len(stores), o.verify), map[string]any{"event": "verified", "release": b.Release, "locations": len(stores), "depth": o.verify})
	}
	if img.Store.Release != spec.ReleaseLatest && img.Store.Release != b.Release {
		out.note(fmt.Sprintf("Note: %s pins image %s to release %s; set release: %s (or latest) to roll this build out.", o.fleet.File, img.Key, img.Store.Release, b.Release), nil)
	}
	return nil
}

// pruneReleases deletes old releases nobody runs, on every location, after
// listing them and asking.
func pruneReleases(ctx context.Context, env *Env, out *pushOutput, o *pushOptions, fleet *spec.Fleet, img spec.Image, stores []*imagestore.Store) error {
	inUse, err := releasesInUse(ctx, env, o, fleet, img)
	if err != nil {
		return fmt.Errorf("prune %s: %w", img.Key, err)
	}
	now := time.Now()
	if o.now != nil {
		now = o.now()
	}
	type locPlan struct {
		store *imagestore.Store
		plan  []imagestore.PruneDecision
	}
	var plans []locPlan
	deletes := 0
	for _, s := range stores {
		rels, err := s.Releases(ctx)
		if err != nil {
			return err
		}
		latest, err := s.Latest(ctx)
		if err != nil {
			return err
		}
		p := imagestore.PlanPrune(rels, o.prune, inUse, latest, now)
		for _, d := range p {
			if d.Delete {
				deletes++
			}
		}
		plans = append(plans, locPlan{s, p})
	}
	for _, lp := range plans {
		out.prunePlan(imagestore.Describe(lp.store.Loc), lp.plan)
	}
	if deletes == 0 {
		out.note("Prune: nothing to delete.", map[string]any{"event": "prune", "deleted": 0})
		return nil
	}
	if !o.autoApprove {
		// Ctrl-C at the prompt exits 130 at once, as for apply and destroy.
		if err := confirm(ctx, env, "prune", fmt.Sprintf("Delete %d release(s) of image %s?", deletes, img.Key)); err != nil {
			return err
		}
	}
	for _, lp := range plans {
		for _, d := range lp.plan {
			if !d.Delete {
				continue
			}
			if err := lp.store.DeleteRelease(ctx, d.Release); err != nil {
				if ctx.Err() != nil {
					return withCode(ExitInterrupted, fmt.Errorf("prune interrupted while deleting release %s (manifest first: it is no longer a release); run it again to finish", d.Release.ID))
				}
				return err
			}
			out.note(fmt.Sprintf("%s: deleted release %s", imagestore.Describe(lp.store.Loc), d.Release.ID),
				map[string]any{"event": "deleted", "location": imagestore.Describe(lp.store.Loc), "release": d.Release.ID})
		}
	}
	return nil
}

// releasesInUse reads, from the boot scripts of the fleet's live devices,
// the releases of img they run. A device of a group that boots img whose
// script names no release (a script served from ipxe_script_url) makes
// prune refuse: it might run any of them.
func releasesInUse(ctx context.Context, env *Env, o *pushOptions, fleet *spec.Fleet, img spec.Image) (map[string]bool, error) {
	l, err := listFleet(ctx, env, o.fleet, o.api)
	if err != nil {
		return nil, fmt.Errorf("list the devices that may run a release: %w", err)
	}
	defer l.client.Close()
	groupImage := map[string]string{}
	for _, g := range fleet.Groups {
		groupImage[g.Name] = g.Image
	}
	inUse := map[string]bool{}
	for _, d := range l.live {
		slot, _ := spec.ParseSlot(d.Slot())
		rels, unknown := imagestore.InUse([]string{d.Userdata + "\n" + d.ScriptURL}, img.Store)
		for _, r := range rels {
			inUse[r] = true
		}
		if unknown > 0 && groupImage[slot.Group] == img.Key {
			return nil, fmt.Errorf("device %s (slot %s) boots image %s but its userdata names no release (script served from a URL?): refusing to prune what it may run", d.Hostname, d.Slot(), img.Key)
		}
	}
	return inUse, nil
}

// pushOutput shows a push: bars per file on a terminal, lines otherwise,
// JSON lines with -o json.
type pushOutput struct {
	env  *Env
	mode ui.Mode
	mu   sync.Mutex
	p    *mpb.Progress
	bars map[string]*mpb.Bar
}

func newPushOutput(env *Env, mode ui.Mode) *pushOutput {
	return &pushOutput{env: env, mode: mode, bars: map[string]*mpb.Bar{}}
}

func (o *pushOutput) json(v map[string]any) {
	data, _ := json.Marshal(v)
	fmt.Fprintf(o.env.Out, "%s\n", data)
}

func (o *pushOutput) begin(b *imagestore.Build, locations int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var size int64
	for _, f := range b.Files {
		size += f.Size
	}
	switch o.mode {
	case ui.JSON:
		o.json(map[string]any{"event": "release", "release": b.Release, "image": b.Name, "source": b.Source, "bytes": size, "locations": locations})
	default:
		fmt.Fprintf(o.env.Out, "Pushing %s release %s (%s, %s) to %d location(s)\n", b.Name, b.Release, b.Source, formatBytes(size), locations)
	}
	if o.mode == ui.TTY {
		// The caller chose the terminal view: keep drawing even when Out is
		// not the terminal's file itself (mpb then cannot move the cursor
		// and prints frames one after the other, which a test can read).
		o.p = mpb.New(mpb.WithOutput(o.env.Out), mpb.WithAutoRefresh())
	}
}

func (o *pushOutput) event(e imagestore.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch o.mode {
	case ui.JSON:
		if e.Kind == imagestore.FileProgress {
			return // one line per file step, not per buffer read
		}
		v := map[string]any{"event": string(e.Kind), "location": e.Location}
		if e.File != "" {
			v["file"], v["bytes"] = e.File, e.Total
		}
		if e.Err != nil {
			v["error"] = e.Err.Error()
		}
		o.json(v)
	case ui.Plain:
		ts := time.Now().UTC().Format("2006-01-02T15:04:05Z")
		switch e.Kind {
		case imagestore.FileStart:
			fmt.Fprintf(o.env.Out, "%s %s: uploading %s (%s)\n", ts, e.Location, e.File, formatBytes(e.Total))
		case imagestore.FileDone:
			fmt.Fprintf(o.env.Out, "%s %s: uploaded %s ✓\n", ts, e.Location, e.File)
		case imagestore.FileSkip:
			fmt.Fprintf(o.env.Out, "%s %s: %s already there ✓\n", ts, e.Location, e.File)
		case imagestore.Published:
			fmt.Fprintf(o.env.Out, "%s %s: manifest written, release published ✓\n", ts, e.Location)
		case imagestore.UpToDate:
			fmt.Fprintf(o.env.Out, "%s %s: release already complete, nothing uploaded ✓\n", ts, e.Location)
		case imagestore.Failed:
			// The error names its location already.
			fmt.Fprintf(o.env.Out, "%s failed ✗ %v\n", ts, e.Err)
		}
	case ui.TTY:
		id := e.Location + " " + e.File
		bar := o.bars[id]
		if bar == nil && e.File != "" {
			where := "default"
			if e.Zone != "" {
				where = "mirror " + e.Zone
			}
			name := where + "  " + e.File
			bar = o.p.AddBar(e.Total,
				mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR)),
				mpb.AppendDecorators(decor.CountersKibiByte("% .1f / % .1f"), decor.Name(" "), decor.OnComplete(decor.Percentage(), "✓")))
			o.bars[id] = bar
		}
		switch e.Kind {
		case imagestore.FileProgress, imagestore.FileDone, imagestore.FileSkip:
			bar.SetCurrent(e.Bytes)
		case imagestore.Failed:
			for k, b := range o.bars {
				if strings.HasPrefix(k, e.Location+" ") {
					b.Abort(false)
				}
			}
		}
	}
}

// wait ends the progress bars (aborting those of failed uploads).
func (o *pushOutput) wait() {
	o.mu.Lock()
	p, bars := o.p, o.bars
	o.mu.Unlock()
	if p == nil {
		return
	}
	for _, b := range bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	p.Wait()
}

func (o *pushOutput) result(r imagestore.Result) {
	o.mu.Lock()
	defer o.mu.Unlock()
	state := "up to date, nothing uploaded"
	if r.Published {
		state = fmt.Sprintf("published (%d uploaded, %s; %d already there)", len(r.Uploaded), formatBytes(r.Bytes), len(r.Skipped))
	}
	if r.LatestMoved {
		state += "; latest → " + r.Release
	}
	if o.mode == ui.JSON {
		o.json(map[string]any{"event": "result", "location": r.Location, "release": r.Release, "uploaded": orEmpty(r.Uploaded), "skipped": orEmpty(r.Skipped), "bytes": r.Bytes, "published": r.Published, "latest_moved": r.LatestMoved})
		return
	}
	fmt.Fprintf(o.env.Out, "%s: release %s %s\n", r.Location, r.Release, state)
}

func (o *pushOutput) note(text string, v map[string]any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mode == ui.JSON {
		if v != nil {
			o.json(v)
		}
		return
	}
	fmt.Fprintln(o.env.Out, text)
}

func (o *pushOutput) prunePlan(where string, plan []imagestore.PruneDecision) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mode == ui.JSON {
		for _, d := range plan {
			o.json(map[string]any{"event": "prune-plan", "location": where, "release": d.Release.ID, "pushed": d.Release.Pushed, "bytes": d.Release.Bytes, "delete": d.Delete, "reason": d.Reason})
		}
		return
	}
	fmt.Fprintf(o.env.Out, "\nReleases on %s:\n", where)
	t := ui.NewTable(o.env.Out, "ACTION", "RELEASE", "PUSHED", "SIZE", "REASON")
	for _, d := range plan {
		action := "keep"
		if d.Delete {
			action = "delete"
		}
		t.Row(action, d.Release.ID, d.Release.Pushed.UTC().Format(time.RFC3339), formatBytes(d.Release.Bytes), d.Reason)
	}
	_ = t.Flush()
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// formatBytes is a size in binary units with one decimal.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
