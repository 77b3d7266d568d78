package packet

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/planner"
)

// TestMutationErrorsNameOperationAndDeviceOnce pins the exact message of a
// refused create, update, delete and action: the operation, the device as
// the client knows it, the status and the service's words, each once.
func TestMutationErrorsNameOperationAndDeviceOnce(t *testing.T) {
	const id = "0f9c9c1a-0000-4000-8000-000000000001"
	name := "web-ams1-2"
	for _, tc := range []struct {
		method string
		call   func(c *Client) error
		want   string
	}{
		{"POST", func(c *Client) error { _, err := c.Create(context.Background(), testDevice()); return err },
			`create device "web-ams1-2" (slot web/ams1/2): 422 no capacity`},
		{"PUT", func(c *Client) error {
			return c.Update(context.Background(), id, planner.DeviceUpdate{Hostname: &name})
		},
			`update device "` + id + `": 422 no capacity`},
		{"DELETE", func(c *Client) error { return c.Delete(context.Background(), id) },
			`delete device "` + id + `": 422 no capacity`},
		{"POST", func(c *Client) error { return c.Reboot(context.Background(), id) },
			`device action reboot "` + id + `": 422 no capacity`},
	} {
		f := &fakeAPI{}
		f.hook = func(w http.ResponseWriter, r *http.Request, n int) bool {
			if r.Method == tc.method {
				return fail(422, "no capacity")(w, r, n)
			}
			return false
		}
		c := startFake(t, f, nil)
		if err := tc.call(c); err == nil || err.Error() != tc.want {
			t.Errorf("%s: error %v, want %q", tc.method, err, tc.want)
		}
	}
}

// isAmbiguous reports whether err is an *APIError that may have acted.
func isAmbiguous(err error) bool {
	ae, ok := errors.AsType[*APIError](err)
	return ok && ae.Ambiguous()
}
