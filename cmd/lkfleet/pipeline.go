package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/internal/ui"
	"github.com/lkfleet/lkfleet/pkg/imagestore"
	"github.com/lkfleet/lkfleet/pkg/packet"
	"github.com/lkfleet/lkfleet/pkg/pipeline"
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
	cmd.Flags().BoolVar(&o.skipPreflight, "skip-preflight", false, "do not check that kernels, initrds and script URLs are reachable (cmdlines the fleet file does not give are still fetched: scripts carry them)")
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
	// runs are the finished runs the plan was computed with.
	runs planner.Runs
}

// computePlan wires the flags to pipeline.Plan over the command's API
// client (the caller closes it), which the returned plan keeps for apply.
// Notes go to stderr. runs are the finished runs of the fleet's lease
// (readLease).
func computePlan(ctx context.Context, env *Env, src fleetSource, client *packet.Client, o planOptions, runs planner.Runs, beforeLive func(context.Context) error) (_ *planned, err error) {
	fleet := src.fleet
	defer func() { err = explain(err, fleet) }()
	plan, err := pipeline.Plan(ctx, newPlanBackend(client, fleet), pipeline.Request{
		Fleet:         fleet,
		FleetBytes:    src.bytes,
		Rebuild:       o.rebuild,
		Replace:       o.replace,
		SkipPreflight: o.skipPreflight,
		Images:        images(),
		Note:          func(s string) { fmt.Fprintln(env.Err, s) },
		Runs:          runs,
		BeforeLive:    beforeLive,
	})
	if err != nil {
		return nil, err
	}
	return &planned{fleet: fleet, client: client, plan: plan, runs: runs}, nil
}

// planBackend is the API client as planning uses it: the fleet listing
// is the lighter ListForPlan, without the devices' IP addresses (about 40 %
// of a listed device) and ports, unless a group manages its network type,
// which is derived from both (pkg/network). Status, which shows
// addresses, lists with List.
type planBackend struct {
	*packet.Client
	addresses bool // list with addresses: the fleet manages network types
}

func newPlanBackend(c *packet.Client, f *spec.Fleet) planBackend {
	b := planBackend{Client: c}
	for _, g := range f.Groups {
		b.addresses = b.addresses || g.NetworkType != ""
	}
	return b
}

// List lists the fleet with only what planning reads.
func (b planBackend) List(ctx context.Context) ([]planner.Live, error) {
	if b.addresses {
		return b.Client.List(ctx)
	}
	return b.ListForPlan(ctx)
}

// images is how planning, render and status see images published with
// lkfleet push: releases resolved and, in preflight, verified at quick
// depth (HEADs against the manifest) over the URLs devices boot from.
func images() pipeline.Images {
	return imagestore.NewResolver(pipeline.HTTPClient(), imagestore.Quick)
}

// colorOut reports whether stdout gets colours.
func colorOut(env *Env) bool { return ui.IsColor(env.Getenv, env.OutTTY) }

// since formats an age for tables.
func since(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return ui.FormatAge(now.Sub(t))
}

// fleetSource is a loaded fleet with the bytes it was loaded from (their
// hash is the plan's fleet fingerprint).
type fleetSource struct {
	fleet *spec.Fleet
	bytes []byte
}

// readFleet loads the fleet file.
func readFleet(env *Env, ff fleetFlags) (fleetSource, error) {
	fleet, err := loadFleet(env, ff)
	if err != nil {
		return fleetSource{}, err
	}
	data, err := readFleetFile(env, ff.File)
	return fleetSource{fleet: fleet, bytes: data}, err
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
	src, err := readFleet(env, ff)
	if err != nil {
		return nil, err
	}
	fleet, data := src.fleet, src.bytes
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
