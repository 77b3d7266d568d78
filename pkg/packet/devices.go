package packet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// PerPage is the page size of every listing: the most the API allows.
const PerPage = 1000

// maxPages stops a listing whose server never says it ended (the API's own
// bound on `page`).
const maxPages = 100000

// userStatePrefix starts the type of the event a device's user state is
// recorded as: the service records {"state", "code", "message"} posted to
// the user_state_url as an event of type user.<code>.
const userStatePrefix = "user."

// Create makes one device for d, once. It is never retried after a
// failure that could have created the device (timeout, 5xx, lost
// connection, unreadable answer): the *APIError then reports Ambiguous()
// and the caller must look the slot up in a listing before creating again.
// It is re-sent only after a 429 or a connection that never opened, when
// the server certainly did not act.
func (c *Client) Create(ctx context.Context, d spec.Device) (planner.Live, error) {
	req := c.createRequest(d)
	pc, release, err := c.api(withRetryClass(ctx, classOnce))
	if err != nil {
		return planner.Live{}, c.apiError("create device", d.Hostname, d.Slot, err, false)
	}
	defer release()
	l, err := createDevice(pc, req, d.Hardware) // market.go: spot bids
	if err != nil {
		return planner.Live{}, c.apiError("create device", d.Hostname, d.Slot, err, true)
	}
	return l, nil
}

// createRequest is the body that creates d, alone or as a batch entry.
func (c *Client) createRequest(d spec.Device) *packngo.DeviceCreateRequest {
	tags := d.Tags()
	if tags == nil {
		// packngo sends nil as null, which the API rejects.
		tags = []string{}
	}
	req := &packngo.DeviceCreateRequest{
		Hostname:      d.Hostname,
		Plan:          d.Machine,
		OS:            "custom_ipxe",
		BillingCycle:  d.Billing,
		ProjectID:     c.project,
		UserData:      d.APIUserdata(),
		Tags:          tags,
		IPXEScriptURL: d.IPXEScriptURL,
		AlwaysPXE:     d.AlwaysPXE,
	}
	hardwareRequest(req, d.Hardware)
	if c.isMetro(d.Zone) {
		req.Metro = d.Zone
	} else {
		req.Facility = []string{d.Zone}
	}
	return req
}

// List returns the fleet's devices: one listing filtered by the fleet tag,
// PerPage devices a page, so foreign devices cost nothing and N fleet
// devices cost ceil(N/PerPage) requests (one at least).
func (c *Client) List(ctx context.Context) ([]planner.Live, error) {
	if c.fleet == "" {
		return nil, errors.New("list devices: the client has no fleet name")
	}
	return c.list(ctx, "list devices", url.Values{"tag": {spec.TagFleet + c.fleet}})
}

// ListAll returns every device of the project, the fleet's and foreign
// ones, for hostname clash checks.
func (c *Client) ListAll(ctx context.Context) ([]planner.Live, error) {
	return c.list(ctx, "list project devices", url.Values{})
}

// list lists the project's devices that match q (filters, exclude) with
// their facility included. Every device is decoded as a listedDevice and
// mapped through one reused packngo.Device (see listedDevice.fill).
func (c *Client) list(ctx context.Context, op string, q url.Values) ([]planner.Live, error) {
	q.Set("include", "facility")
	var out []planner.Live
	in := interner{}
	err := listPaged(ctx, c, op, q, func(total int) { out = make([]planner.Live, 0, total) },
		func(d *listedDevice) string { return d.ID },
		func(d *listedDevice) {
			d.intern(in)
			l := d.live()
			l.Network = d.network() // ports.go
			out = append(out, l)
		})
	return out, err
}

// listPage is one page of a listing decoded into T. packngo's own listing
// type hides the page numbers, which the paging loop needs.
type listPage[T any] struct {
	Devices []T `json:"devices"`
	Meta    struct {
		CurrentPage int `json:"current_page"`
		LastPage    int `json:"last_page"`
		Total       int `json:"total"`
	} `json:"meta"`
}

// pageBuffers holds the buffers listPaged copies pages into (packngo
// copies an answer into an io.Writer): waiting lists the fleet every few
// seconds, and growing a fresh buffer for each listing was a tenth of an
// apply's allocations.
var pageBuffers keptBuffers

// listPaged is the one paging loop of every listing: it pages through the
// project's devices with query q (filters, include, exclude), PerPage a
// page, calls sized with the total the first page announces (to allocate
// once) and each once per device id. It pages itself: packngo's automatic
// paging follows meta.next.href, which the service writes as
// "/metal/v1/...", and packngo appends that to a base URL that already
// ends in /metal/v1/. It stops at the last page the server names or at a
// short page, so N devices cost ceil(N/PerPage) requests, one at least.
func listPaged[T any](ctx context.Context, c *Client, op string, q url.Values, sized func(total int), id func(*T) string, each func(*T)) error {
	pc, release, err := c.api(ctx)
	defer release()
	if err != nil {
		return c.apiError(op, "", "", err, false)
	}
	seen := map[string]bool{}
	base := "projects/" + url.PathEscape(c.project) + "/devices"
	q.Set("per_page", strconv.Itoa(PerPage))
	// The page's bytes: one buffer for every page of every listing (see
	// pageBuffers); nothing decoded from it aliases it.
	body := bytes.NewBuffer(pageBuffers.get(0))
	defer func() { pageBuffers.put(body.Bytes()) }()
	// One array of PerPage devices is decoded into page after page,
	// cleared in between so no field of a device leaks into the next
	// page's: growing a fresh one per page was 175 MB of a 100,000-device
	// plan's allocations. each copies what it keeps.
	var devs []T
	for page := 1; page <= maxPages; page++ {
		q.Set("page", strconv.Itoa(page))
		req, err := pc.NewRequest(http.MethodGet, base+"?"+q.Encode(), nil)
		if err != nil {
			return c.apiError(op, "", "", err, false)
		}
		// Take the body as bytes (packngo copies into an io.Writer) and
		// unmarshal it whole: a json.Decoder over a 2.5 MB page spends a
		// third of its time growing and copying its own buffer.
		body.Reset()
		if _, err := pc.Do(req, body); err != nil {
			return c.pageError(op, page, err)
		}
		clear(devs[:cap(devs)])
		root := listPage[T]{Devices: devs[:0]}
		if err := decodePage(body.Bytes(), &root); err != nil {
			return c.pageError(op, page, err)
		}
		devs = root.Devices
		if page == 1 && root.Meta.Total > 0 {
			// Bounded: a total is a hint, not a promise.
			n := min(root.Meta.Total, 1<<20)
			sized(n)
			seen = make(map[string]bool, n)
		}
		for i := range root.Devices {
			// A device created while we page shifts later pages by one:
			// the same device may show up twice.
			d := &root.Devices[i]
			if k := id(d); !seen[k] {
				seen[k] = true
				each(d)
			}
		}
		m := root.Meta
		if len(root.Devices) < PerPage || (m.LastPage > 0 && m.CurrentPage >= m.LastPage) {
			return nil
		}
	}
	return nil
}

func (c *Client) pageError(op string, page int, err error) error {
	e := c.apiError(op, "", "", err, false)
	if page > 1 {
		e.Op = fmt.Sprintf("%s (page %d)", op, page)
	}
	if e.Status == http.StatusNotFound {
		e.Messages = append(e.Messages, fmt.Sprintf("(project %s)", c.project))
	}
	return e
}

// Update changes a device's mutable attributes in one PUT.
func (c *Client) Update(ctx context.Context, id string, u planner.DeviceUpdate) error {
	req := &packngo.DeviceUpdateRequest{
		Hostname:      u.Hostname,
		Tags:          u.Tags,
		AlwaysPXE:     u.AlwaysPXE,
		UserData:      u.Userdata,
		IPXEScriptURL: u.IPXEScriptURL,
	}
	if u.Tags != nil && *u.Tags == nil {
		// An empty tag list must go out as [], not null.
		req.Tags = &[]string{}
	}
	pc, release, err := c.api(ctx)
	defer release()
	if err == nil {
		_, _, err = pc.Devices.Update(id, req)
	}
	if err != nil {
		return c.apiError("update device", id, "", err, false)
	}
	return nil
}

// Reboot reboots a device (POST devices/{id}/actions type reboot).
func (c *Client) Reboot(ctx context.Context, id string) error {
	return c.action(ctx, id, "reboot", func(pc *packngo.Client) error {
		_, err := pc.Devices.Reboot(id)
		return err
	})
}

// Reinstall reinstalls a device with its current settings (POST
// devices/{id}/actions type reinstall).
func (c *Client) Reinstall(ctx context.Context, id string) error {
	return c.action(ctx, id, "reinstall", func(pc *packngo.Client) error {
		_, err := pc.Devices.Reinstall(id, nil)
		return err
	})
}

// action sends one device action.
//
// Actions are POSTs that act: a reboot answered by a 5xx or lost on the way
// back may have happened, and repeating it would reboot a machine that is
// already booting. So, like creates, actions are re-sent only after a 429 or
// a connection that never opened; any other failure is returned with
// Ambiguous() true, and the caller decides (every action here converges:
// repeating one costs time, not correctness).
func (c *Client) action(ctx context.Context, id, name string, send func(*packngo.Client) error) error {
	op := "device action " + name
	pc, release, err := c.api(withRetryClass(ctx, classOnce))
	defer release()
	if err != nil {
		return c.apiError(op, id, "", err, false)
	}
	if err := send(pc); err != nil {
		return c.apiError(op, id, "", err, true)
	}
	return nil
}

// Delete deletes a device; one that is already gone (404) is success,
// like rm -f. DELETE is idempotent, so it is retried like a GET.
func (c *Client) Delete(ctx context.Context, id string) error {
	pc, release, err := c.api(ctx)
	defer release()
	if err == nil {
		_, err = pc.Devices.Delete(id, true)
	}
	if err != nil {
		e := c.apiError("delete device", id, "", err, false)
		if e.Status == http.StatusNotFound {
			return nil
		}
		return e
	}
	return nil
}

// toLive reduces a packngo device to what planning needs (listedDevice.live).
func toLive(d *packngo.Device) planner.Live {
	ld := listedOf(d)
	return ld.live()
}

// newestUserState picks the latest user state (user.<code>) event. Events in one second
// are common (a fast boot posts running and succeeded together) and the
// API may list events in either order, so on equal times a final state
// (succeeded, failed) wins over running.
func newestUserState(events []listedEvent) *listedEvent {
	var best *listedEvent
	for i := range events {
		e := &events[i]
		if !strings.HasPrefix(e.Type, userStatePrefix) || e.State == "" {
			continue
		}
		if best == nil || later(e, best) {
			best = e
		}
	}
	return best
}

// newestEvent is the message of the newest event of any type (its type
// when it has no message), "" when there is none.
func newestEvent(events []listedEvent) string {
	var best *listedEvent
	for i := range events {
		if e := &events[i]; best == nil || later(e, best) {
			best = e
		}
	}
	switch {
	case best == nil:
		return ""
	case best.Body != "":
		return best.Body
	}
	return best.Type
}

func later(a, b *listedEvent) bool {
	var ta, tb time.Time
	if a.CreatedAt != nil {
		ta = a.CreatedAt.Time
	}
	if b.CreatedAt != nil {
		tb = b.CreatedAt.Time
	}
	if !ta.Equal(tb) {
		return ta.After(tb)
	}
	return b.State == "running" && a.State != "running"
}
