package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/internal/ui"
	"github.com/lkfleet/lkfleet/pkg/ipxe"
	"github.com/lkfleet/lkfleet/pkg/packet"
	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// apiFlags are the flags of every command that talks to the API.
type apiFlags struct {
	apiURL string
	rate   float64
	debug  bool
}

func addAPIFlags(cmd *cobra.Command, a *apiFlags) {
	cmd.Flags().StringVar(&a.apiURL, "api-url", "", "API base URL (default $PACKET_API_URL, else "+packet.DefaultAPIURL+")")
	cmd.Flags().Float64Var(&a.rate, "rate", 0, "cap API requests per second (0: only the server's limit)")
	cmd.Flags().BoolVar(&a.debug, "debug", false, "dump API requests and responses to stderr (token redacted)")
}

// newClient builds the API client for fleet from flags and environment.
// The token is only ever read from the environment.
func newClient(env *Env, fleet *spec.Fleet, a apiFlags) (*packet.Client, error) {
	token := packet.TokenFromEnv(env.Getenv)
	if token == "" {
		return nil, errors.New("no API token: set PACKET_AUTH_TOKEN (or PACKET_API_KEY, METAL_AUTH_TOKEN)")
	}
	url := a.apiURL
	if url == "" {
		url = packet.APIURLFromEnv(env.Getenv)
	}
	cfg := packet.Config{
		APIURL:    url,
		Token:     token,
		Project:   fleet.Project,
		Fleet:     fleet.Name,
		UserAgent: "lkfleet/" + Version,
		Rate:      a.rate,
	}
	if a.debug {
		cfg.Debug = env.Err
	}
	return packet.New(cfg)
}

// planOptions say how a plan is computed.
type planOptions struct {
	skipPreflight bool
	rebuild       []string
	replace       []string
}

func addPlanFlags(cmd *cobra.Command, o *planOptions, forcing bool) {
	cmd.Flags().BoolVar(&o.skipPreflight, "skip-preflight", false, "do not check that kernels, initrds and script URLs are reachable")
	if forcing {
		cmd.Flags().StringSliceVar(&o.rebuild, "rebuild", nil, "rebuild devices even if unchanged: all, a GROUP or a SLOT (repeatable)")
		cmd.Flags().StringSliceVar(&o.replace, "replace", nil, "replace the device in SLOT even if unchanged (repeatable)")
	}
}

// planned is a plan with the fleet and the API client it was made with.
type planned struct {
	fleet  *spec.Fleet
	client *packet.Client
	plan   planner.Plan
}

// artifactClient fetches cmdlines, HEADs artifacts and script URLs.
func artifactClient() *http.Client { return &http.Client{Timeout: ipxe.RequestTimeout} }

// renderDevices renders the iPXE script and rev of every desired device,
// fetching each image's cmdline once. arches maps machine slugs to
// architectures (nil when unknown).
func renderDevices(ctx context.Context, desired []spec.Device, arches map[string]string) ([]spec.Device, error) {
	cmdlines, err := ipxe.FetchCmdlines(ctx, artifactClient(), desired)
	if err != nil {
		return nil, err
	}
	return ipxe.Render(desired, cmdlines, arches)
}

// computePlan runs the whole planning pipeline: load, catalogue check,
// render, preflight, one tag-filtered listing (plus one project listing
// when devices are to be created, for hostname clashes), diff.
func computePlan(ctx context.Context, env *Env, fleet *spec.Fleet, fleetBytes []byte, a apiFlags, o planOptions, status func(string)) (_ *planned, err error) {
	defer func() { err = explain(err, fleet) }()
	client, err := newClient(env, fleet, a)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			client.Close()
		}
	}()
	cat, err := client.Catalogue(ctx)
	if err != nil {
		return nil, err
	}
	desired, err := spec.Expand(fleet)
	if err != nil {
		return nil, err
	}
	if err := planner.CheckCatalogue(desired, cat); err != nil {
		return nil, err
	}
	desired, err = renderDevices(ctx, desired, archesOf(cat))
	if err != nil {
		return nil, err
	}
	if o.skipPreflight {
		status(skippedPreflight(desired))
	} else {
		if err := ipxe.Preflight(ctx, artifactClient(), desired); err != nil {
			return nil, fmt.Errorf("preflight: %w", err)
		}
		if err := ipxe.CheckScriptURLs(ctx, artifactClient(), desired); err != nil {
			return nil, fmt.Errorf("preflight: %w", err)
		}
	}
	live, err := client.ListForPlan(ctx) // addresses are not planned
	if err != nil {
		return nil, err
	}
	in := planner.Input{
		Fleet:            fleet,
		Desired:          desired,
		Live:             live,
		Rebuild:          o.rebuild,
		Replace:          o.replace,
		FleetFingerprint: planner.FleetFingerprint(fleetBytes),
		Catalogue:        &cat,
	}
	if createsAny(desired, live) {
		// Devices will be created: look at the whole project once for
		// hostname clashes with devices this fleet does not own.
		all, err := client.ListAll(ctx)
		if err != nil {
			return nil, err
		}
		for _, d := range all {
			if d.Fleet != fleet.Name {
				in.Foreign = append(in.Foreign, d)
			}
		}
	}
	plan, err := planner.Compute(in)
	if err != nil {
		return nil, err
	}
	if capNeeds := capacityNeeds(plan); len(capNeeds) > 0 {
		warnings, err := client.CheckCapacity(ctx, capNeeds)
		if err != nil {
			return nil, err
		}
		plan.Warnings = append(plan.Warnings, warnings...)
	}
	return &planned{fleet: fleet, client: client, plan: plan}, nil
}

// archesOf maps machine slugs to the architecture the catalogue gives.
func archesOf(cat planner.Catalogue) map[string]string {
	m := make(map[string]string, len(cat.Plans))
	for slug, p := range cat.Plans {
		if p.Arch != "" {
			m[slug] = p.Arch
		}
	}
	return m
}

// createsAny reports whether any desired slot has no live device.
func createsAny(desired []spec.Device, live []planner.Live) bool {
	have := make(map[string]bool, len(live))
	for _, l := range live {
		have[l.Slot] = true
	}
	for _, d := range desired {
		if !have[d.Slot] {
			return true
		}
	}
	return false
}

// capacityNeeds counts the devices a plan creates per zone and machine.
func capacityNeeds(p planner.Plan) map[packet.Need]int {
	needs := map[packet.Need]int{}
	for _, c := range p.Changes {
		if c.Desired == nil {
			continue
		}
		switch c.Action {
		case planner.Create, planner.Replace:
		case planner.Rebuild:
			if c.Strategy != spec.RebuildRecr {
				continue
			}
		default:
			continue
		}
		needs[packet.Need{Zone: c.Desired.Zone, Machine: c.Desired.Machine}]++
	}
	return needs
}

// colorOut reports whether stdout gets colours.
func colorOut(env *Env) bool { return ui.IsColor(env.Getenv, env.OutTTY) }

// since formats an age for tables.
func since(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return ui.FormatDuration(now.Sub(t).Truncate(time.Second))
}

// readFleet loads the fleet file and returns it with the bytes it was
// loaded from (their hash is the plan's fleet fingerprint).
func readFleet(env *Env, ff fleetFlags) (*spec.Fleet, []byte, error) {
	fleet, err := loadFleet(env, ff)
	if err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(ff.File)
	return fleet, data, err
}

// explain turns the API answers every command can meet into one line that
// says what to fix: a refused token, or a project that does not exist.
func explain(err error, fleet *spec.Fleet) error {
	var ae *packet.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch {
	case ae.Status == http.StatusUnauthorized:
		return fmt.Errorf("the API refused the token (401 %s): check PACKET_AUTH_TOKEN", strings.Join(ae.Messages, "; "))
	case ae.Status == http.StatusNotFound && strings.HasPrefix(ae.Op, "list devices"):
		return fmt.Errorf("project %s not found (404): check --project, PACKET_PROJECT_ID or the fleet file's project", fleet.Project)
	}
	return err
}

// listed is a fleet with its live devices.
type listed struct {
	fleet      *spec.Fleet
	fleetBytes []byte
	client     *packet.Client
	live       []planner.Live
}

// listFleet loads the fleet file and lists the fleet's live devices: one
// tag-filtered listing, so devices of other owners cost nothing.
func listFleet(ctx context.Context, env *Env, ff fleetFlags, a apiFlags) (*listed, error) {
	fleet, data, err := readFleet(env, ff)
	if err != nil {
		return nil, err
	}
	client, err := newClient(env, fleet, a)
	if err != nil {
		return nil, err
	}
	live, err := client.List(ctx)
	if err != nil {
		client.Close()
		return nil, explain(err, fleet)
	}
	return &listed{fleet: fleet, fleetBytes: data, client: client, live: live}, nil
}

// skippedPreflight says what --skip-preflight left unchecked.
func skippedPreflight(desired []spec.Device) string {
	artifacts, scripts := map[string]bool{}, map[string]bool{}
	for _, d := range desired {
		artifacts[d.Image.KernelURL()] = true
		artifacts[d.Image.InitrdURL()] = true
		if d.IPXEScriptURL != "" {
			scripts[d.IPXEScriptURL] = true
		}
	}
	return fmt.Sprintf("Preflight skipped (--skip-preflight): %d kernel and initrd URLs and %d script URLs were not checked.", len(artifacts), len(scripts))
}
