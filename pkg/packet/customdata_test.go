package packet

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// TestCustomdataRoundTrip writes and reads the project's customdata on the
// simulator, every exchange checked against the API description: the
// object is replaced whole and read back as written.
func TestCustomdataRoundTrip(t *testing.T) {
	c, srv := startSim(t, packetsim.Config{}, true, nil)
	ctx := t.Context()
	got, err := c.Customdata(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("fresh project: %v %v", got, err)
	}
	want := map[string]json.RawMessage{"team": json.RawMessage(`{"owner":"ops"}`), "lkfleet:lease:web": json.RawMessage(`{"holder":"h/1/x"}`)}
	if err := c.SetCustomdata(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err = c.Customdata(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got["team"]) != `{"owner":"ops"}` || string(got["lkfleet:lease:web"]) != `{"holder":"h/1/x"}` {
		t.Errorf("read back %s", got)
	}
	// The simulator refuses what the service would: customdata that is not
	// an object.
	req, _ := http.NewRequest("PUT", srv.APIURL+"projects/"+testProject, strings.NewReader(`{"customdata":[1]}`))
	req.Header.Set("X-Auth-Token", testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("array customdata: %d, want 422", resp.StatusCode)
	}
}
