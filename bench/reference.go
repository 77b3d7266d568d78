package main

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/packethost/packngo"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// The reference strategies below are models of what people run instead of
// lkfleet, on the same simulator, written with packngo directly. They are
// deliberately generous: they poll quickly and never make a mistake.
const (
	// serialPoll is how often the one-at-a-time loop asks about its device.
	serialPoll = time.Second
	// tfParallelism is Terraform's default -parallelism.
	tfParallelism = 10
)

// tfWaiter is the equinix provider's wait for a created device
// (resource.StateChangeConf with Delay 10 s, MinTimeout 3 s): the first
// read 10 s after the create, then after 3 s, 6 s, and every 10 s until
// the device is active; the resource's Read then reads it once more.
var tfWaiter = []time.Duration{10 * time.Second, 3 * time.Second, 6 * time.Second, 10 * time.Second}

// tfWaiterModel describes tfWaiter for the report.
const tfWaiterModel = "GET 10 s after the create, then after 3 s, 6 s and every 10 s until active, then one more GET (the resource's Read)"

// refResult is one run of a reference strategy.
type refResult struct {
	Name      string  `json:"name"`
	Model     string  `json:"model"`
	N         int     `json:"n"`
	WallS     float64 `json:"wall_s"`
	Requests  int     `json:"requests"`
	Throttled int     `json:"throttled_429"`
	Retries   int64   `json:"retries_after_429"`
	// LkfleetWallS is lkfleet's wall time on the same job and size; Ratio
	// is LkfleetWallS / WallS (below 1: lkfleet is faster).
	LkfleetWallS float64 `json:"lkfleet_wall_s"`
	Ratio        float64 `json:"lkfleet_ratio"`
	Speedup      float64 `json:"speedup"`
}

// retry429 re-sends a request refused with 429 after Retry-After (like the
// retrying HTTP client the provider uses); anything else is passed up.
type retry429 struct {
	next    http.RoundTripper
	retries atomic.Int64
}

func (t *retry429) RoundTrip(req *http.Request) (*http.Response, error) {
	for {
		resp, err := t.next.RoundTrip(req)
		if err != nil || resp.StatusCode != http.StatusTooManyRequests {
			return resp, err
		}
		wait := time.Second
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			wait = time.Duration(s) * time.Second
		}
		resp.Body.Close()
		t.retries.Add(1)
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(wait):
		}
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// refClient is a packngo client against b's simulator.
func (b *bed) refClient() (*packngo.Client, *retry429, error) {
	rt := &retry429{next: http.DefaultTransport}
	c, err := packngo.NewClient(packngo.WithAuth("", benchTok), packngo.WithHTTPClient(&http.Client{Transport: rt, Timeout: time.Minute}), packngo.WithBaseURL(b.apiURL))
	return c, rt, err
}

func createReq(project string, d spec.Device) *packngo.DeviceCreateRequest {
	return &packngo.DeviceCreateRequest{
		Hostname: d.Hostname, Plan: d.Machine, Facility: []string{d.Zone}, OS: "custom_ipxe",
		BillingCycle: d.Billing, ProjectID: project, UserData: d.APIUserdata(), Tags: d.Tags(), AlwaysPXE: d.AlwaysPXE,
	}
}

// waitActive reads one device until it is active, sleeping schedule[i]
// before the i-th read (the last entry repeats).
func waitActive(ctx context.Context, c *packngo.Client, id string, schedule ...time.Duration) error {
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(schedule[min(i, len(schedule)-1)]):
		}
		dev, _, err := c.Devices.Get(id, nil)
		if err != nil {
			return fmt.Errorf("get device %s: %w", id, err)
		}
		switch dev.State {
		case "active":
			return nil
		case "failed":
			return fmt.Errorf("device %s failed", id)
		}
	}
}

// refSerial models a shell loop over a one-device runner: create one
// device, read it every second until it is active, then the next.
func refSerial(ctx context.Context, o opts, n int) (refResult, error) {
	b, err := newBed(o.bin, mkdir(o.tmp, "ref-serial"), o.images, n)
	if err != nil {
		return refResult{}, err
	}
	defer b.close()
	desired, err := b.desired(ctx)
	if err != nil {
		return refResult{}, err
	}
	c, rt, err := b.refClient()
	if err != nil {
		return refResult{}, err
	}
	before := b.sim.Stats()
	start := time.Now()
	for _, d := range desired {
		dev, _, err := c.Devices.Create(createReq(b.sim.Project(), d))
		if err != nil {
			return refResult{}, fmt.Errorf("serial reference: create %s: %w", d.Hostname, err)
		}
		if err := waitActive(ctx, c, dev.ID, serialPoll); err != nil {
			return refResult{}, fmt.Errorf("serial reference: %w", err)
		}
	}
	wall := time.Since(start)
	st := diff(before, b.sim.Stats())
	return refResult{
		Name: "one at a time", Model: fmt.Sprintf("create, GET every %v until active, next device", serialPoll),
		N: n, WallS: wall.Seconds(), Requests: st.Total, Throttled: st.Throttled, Retries: rt.retries.Load(),
	}, nil
}

// refTerraform models a Terraform-style apply: refresh (one GET per device
// already in the state), then creates with parallelism 10, each create
// holding its slot while the provider's waiter reads it (tfWaiter), then
// one final read. existing devices are seeded first (0 for a fresh
// apply). paced sends the refresh through a client-side limiter told the
// server's limits (R, B), so it draws no 429s; unpaced it storms them like
// the provider's retrying client does.
func refTerraform(ctx context.Context, o opts, n, existing int, paced bool) (refResult, error) {
	b, err := newBed(o.bin, mkdir(o.tmp, fmt.Sprintf("ref-tf-%d-%d-%v", n, existing, paced)), o.images, max(n, existing))
	if err != nil {
		return refResult{}, err
	}
	defer b.close()
	desired, err := b.desired(ctx)
	if err != nil {
		return refResult{}, err
	}
	var ids []string
	if existing > 0 {
		if ids, err = b.seedDevices(desired[:existing]); err != nil {
			return refResult{}, err
		}
	}
	c, rt, err := b.refClient()
	if err != nil {
		return refResult{}, err
	}
	before := b.sim.Stats()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(tfParallelism)
	lim := rate.NewLimiter(rate.Inf, 1)
	if paced {
		lim = rate.NewLimiter(rate.Limit(rateR), burstB)
	}
	for _, id := range ids {
		g.Go(func() error {
			if err := lim.Wait(gctx); err != nil {
				return err
			}
			_, _, err := c.Devices.Get(id, nil)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return refResult{}, fmt.Errorf("terraform-style refresh: %w", err)
	}
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(tfParallelism)
	for _, d := range desired[existing:n] {
		g.Go(func() error {
			dev, _, err := c.Devices.Create(createReq(b.sim.Project(), d))
			if err != nil {
				return fmt.Errorf("create %s: %w", d.Hostname, err)
			}
			if err := waitActive(gctx, c, dev.ID, tfWaiter...); err != nil {
				return err
			}
			_, _, err = c.Devices.Get(dev.ID, nil) // the resource's Read
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return refResult{}, fmt.Errorf("terraform-style apply: %w", err)
	}
	wall := time.Since(start)
	st := diff(before, b.sim.Stats())
	name, model := "Terraform-style apply", fmt.Sprintf("%d parallel creates, each: %s", tfParallelism, tfWaiterModel)
	if existing > 0 && n <= existing {
		name, model = "Terraform-style refresh (429 storm)", fmt.Sprintf("one GET per device in the state, %d in parallel, unpaced; a 429 is retried after Retry-After", tfParallelism)
		if paced {
			name, model = "Terraform-style refresh (well paced)", fmt.Sprintf("one GET per device in the state, %d in parallel, paced at the server's R = %d/s with burst %d (told the limits)", tfParallelism, rateR, burstB)
		}
	}
	return refResult{Name: name, Model: model, N: max(n, existing), WallS: wall.Seconds(), Requests: st.Total,
		Throttled: st.Throttled, Retries: rt.retries.Load()}, nil
}
