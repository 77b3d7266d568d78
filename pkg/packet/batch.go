package packet

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/packethost/packngo"

	"github.com/lkfleet/lkfleet/pkg/planner"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// MaxBatch is the most devices one batch request may create: the
// simulator refuses more (the service's own cap is not published).
const MaxBatch = spec.MaxCreateBatch

// opCreateBatch names a batch request in errors.
const opCreateBatch = "create device batch"

// batchAnswer is the service's answer to a batch create. packngo's Batch
// type decodes each entry's devices into full packngo.Device values, but
// the API lists them as hrefs ({"href": "/metal/v1/devices/ID"}): its ID
// fields would stay empty. So the answer is read with this type.
type batchAnswer struct {
	Batches []struct {
		ID            string   `json:"id"`
		State         string   `json:"state"`
		ErrorMessages []string `json:"error_messages"`
		Devices       []struct {
			Href string `json:"href"`
		} `json:"devices"`
	} `json:"batches"`
}

// CreateBatch creates the devices ds in one request (POST
// /projects/{id}/devices/batch), one batch entry of quantity 1 per device,
// each with its own hostname, userdata and tags. Like Create it is sent
// once: re-sent only after a 429 or a connection that never opened.
//
// It returns one Live and one error per device, in the order of ds. An
// entry's error reports Ambiguous() when its device may exist (the whole
// request timed out, got a 5xx or lost its answer; or the answer does not
// name the entry's device): the caller must look the slot up before
// creating it again. A non-ambiguous error (the request was refused, a
// 422 for any entry refuses all) means no device was made for the entry.
//
// The request is built here rather than with packngo's Batches.Create,
// which checks the project id's form before sending (its failure would
// look like a lost answer) and decodes the answer into the wrong type.
func (c *Client) CreateBatch(ctx context.Context, ds []spec.Device) ([]planner.Live, []error) {
	lives, errs := make([]planner.Live, len(ds)), make([]error, len(ds))
	fail := func(err error) ([]planner.Live, []error) {
		for i := range errs {
			errs[i] = err
		}
		return lives, errs
	}
	if len(ds) == 0 {
		return lives, errs
	}
	op, who := opCreateBatch, batchName(ds)
	if len(ds) > MaxBatch {
		return fail(&APIError{Op: op, Device: who, Messages: []string{fmt.Sprintf("%d devices, at most %d per batch", len(ds), MaxBatch)}})
	}
	body := &packngo.BatchCreateRequest{Batches: make([]packngo.BatchCreateDevice, len(ds))}
	for i, d := range ds {
		body.Batches[i] = packngo.BatchCreateDevice{DeviceCreateRequest: *c.createRequest(d), Quantity: 1}
	}
	pc, release, err := c.api(withRetryClass(ctx, classOnce))
	defer release()
	var req *http.Request
	if err == nil {
		req, err = pc.NewRequest(http.MethodPost, path.Join("projects", url.PathEscape(c.project), "devices", "batch"), body)
	}
	if err != nil {
		return fail(c.apiError(op, who, "", err, false))
	}
	var ans batchAnswer
	if _, err := pc.Do(req, &ans); err != nil {
		return fail(c.apiError(op, who, "", err, true))
	}
	if len(ans.Batches) != len(ds) {
		// The entries cannot be matched to the answer: every one may exist.
		return fail(&APIError{Op: op, Device: who, Status: http.StatusCreated, Indeterminate: true,
			Messages: []string{fmt.Sprintf("the answer lists %d batches for %d entries", len(ans.Batches), len(ds))}})
	}
	for i, b := range ans.Batches {
		d := ds[i]
		if len(b.Devices) == 1 && b.Devices[0].Href != "" {
			lives[i] = planner.Live{ID: path.Base(b.Devices[0].Href), Hostname: d.Hostname, State: "queued", Tags: d.Tags()}
			continue
		}
		// Failed (its messages say why) or still queued: whether the device
		// exists is for the slot lookup to tell.
		msgs := []string{"batch " + b.ID + " is " + orState(b.State) + " without naming its device"}
		for _, m := range b.ErrorMessages {
			if m = strings.TrimSpace(m); m != "" {
				msgs = append(msgs, c.tok.redact(m))
			}
		}
		errs[i] = &APIError{Op: "create device (batch entry)", Device: d.Hostname, Slot: d.Slot, Status: http.StatusCreated,
			Messages: msgs, Indeterminate: true}
	}
	return lives, errs
}

func orState(s string) string {
	if s == "" {
		return "in no state"
	}
	return s
}

// batchName names a batch's devices by its first and last hostname.
func batchName(ds []spec.Device) string {
	switch len(ds) {
	case 0:
		return ""
	case 1:
		return ds[0].Hostname
	}
	return fmt.Sprintf("%s .. %s (%d devices)", ds[0].Hostname, ds[len(ds)-1].Hostname, len(ds))
}
