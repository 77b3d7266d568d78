// Package harness runs lkfleet against a faulty simulator and checks the
// reliability guarantees of DESIGN sections 5, 7 and 10: applies converge
// to exactly the desired slots, never duplicate a slot, never touch a
// device the fleet does not own, exit with codes that tell the truth, and
// survive Ctrl-C and simulator restarts. `make chaos` (go run ./chaos)
// drives it with the built binary; the CLI's tests drive it in-process.
package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// Runner runs one lkfleet command line with the given environment
// variables and returns stdout, stderr and the exit code. Cancelling ctx
// must act like Ctrl-C: an in-process runner passes ctx to the CLI, a
// subprocess runner sends SIGINT.
type Runner func(ctx context.Context, env map[string]string, args ...string) (stdout, stderr string, code int)

// Token is the API token of every lab. Checks grep outputs for it.
const Token = "chaos-token-5f1e0c93d2a84b7e"

// LabConfig configures a Lab.
type LabConfig struct {
	// Dir holds the images, the fleet file and the state file.
	Dir string
	// Sim is the simulator's configuration; Token, ImagesDir and Quiet
	// are set by the lab.
	Sim packetsim.Config
}

// Lab is a simulator behind a recording handler, serving the artifacts of
// images "v1" and "v2" of "sshd", with a fleet file next to it.
type Lab struct {
	// URL is the server's root; APIURL what lkfleet takes as --api-url.
	URL, APIURL string
	// Dir is the lab's directory; FleetFile the fleet file's path.
	Dir, FleetFile string

	cfg  LabConfig
	addr string

	mu   sync.Mutex
	sim  *packetsim.Sim
	srv  *http.Server
	done chan struct{}
	// mutations lists every mutating request: "METHOD PATH".
	mutations []string
	// hook, if set, sees every API request before the simulator does.
	hook func(method, path string)
	// NetworkType, if set, puts WriteFleet's worker group on c3.small.x86
	// with this network type and VLAN 1001 (see docs/networks.md).
	NetworkType string
	// CreateBatch, if above 0, is WriteFleet's rollout.create_batch.
	CreateBatch int
}

// NewLab writes the artifacts and starts the simulator on 127.0.0.1.
func NewLab(cfg LabConfig) (*Lab, error) {
	imgs := filepath.Join(cfg.Dir, "images")
	for _, rel := range []string{"v1", "v2"} {
		d := filepath.Join(imgs, rel)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		for name, body := range map[string]string{
			"sshd-kernel":     "kernel " + rel,
			"sshd-initrd.img": "initrd " + rel,
			"sshd-cmdline":    "console=ttyS1 release=" + rel,
		} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
				return nil, err
			}
		}
	}
	cfg.Sim.Token = Token
	cfg.Sim.ImagesDir = imgs
	cfg.Sim.Quiet = true
	l := &Lab{Dir: cfg.Dir, FleetFile: filepath.Join(cfg.Dir, "fleet.yml"), cfg: cfg, addr: "127.0.0.1:0"}
	if err := l.Start(); err != nil {
		return nil, err
	}
	return l, nil
}

// Start (re)starts the simulator on the lab's address; with a state file
// it comes back with the devices it had.
func (l *Lab) Start() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		return errors.New("lab: simulator already running")
	}
	var ln net.Listener
	var err error
	// The port of a server that just closed can take a moment to free.
	for try := 0; ; try++ {
		ln, err = net.Listen("tcp", l.addr)
		if err == nil || try == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("lab: listen on %s: %w", l.addr, err)
	}
	l.addr = ln.Addr().String()
	l.URL = "http://" + l.addr
	l.APIURL = l.URL + "/metal/v1/"
	sim := packetsim.New(l.cfg.Sim)
	srv := &http.Server{Handler: http.HandlerFunc(l.serve), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	l.sim, l.srv, l.done = sim, srv, done
	return nil
}

// Stop closes the server (cutting requests in flight) and the simulator,
// which writes its state file.
func (l *Lab) Stop() error {
	l.mu.Lock()
	srv, sim, done := l.srv, l.sim, l.done
	l.srv = nil
	l.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	<-done
	if cerr := sim.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close stops the lab for good.
func (l *Lab) Close() error { return l.Stop() }

// Sim returns the running simulator.
func (l *Lab) Sim() *packetsim.Sim {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sim
}

// Project is the simulated project's id.
func (l *Lab) Project() string { return l.Sim().Project() }

// Env is the environment lkfleet runs with against the lab.
func (l *Lab) Env() map[string]string {
	return map[string]string{
		"PACKET_API_URL":    l.APIURL,
		"PACKET_AUTH_TOKEN": Token,
		"PACKET_PROJECT_ID": l.Project(),
		"NO_COLOR":          "1",
		// The simulator's list lag, stated as an operator would.
		"LKFLEET_LIST_LAG": l.cfg.Sim.ListLag.String(),
		// The local simulator stores a write in about a millisecond: the
		// fleet lease's settle delay need not be the 2 s a remote API
		// needs (docs/reliability.md); 300 ms as in the CLI tests.
		"LKFLEET_LOCK_SETTLE": "300ms",
	}
}

// OnRequest sets a function that sees every API request (nil clears
// it). It runs on the server's goroutine before the request is served:
// while it blocks, the request waits.
func (l *Lab) OnRequest(f func(method, path string)) {
	l.mu.Lock()
	l.hook = f
	l.mu.Unlock()
}

// Mutations returns every mutating API request seen so far.
func (l *Lab) Mutations() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.mutations)
}

func (l *Lab) serve(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	sim, hook := l.sim, l.hook
	if strings.HasPrefix(r.URL.Path, "/metal/v1/") && r.Method != http.MethodGet && r.Method != http.MethodHead {
		l.mutations = append(l.mutations, r.Method+" "+r.URL.Path)
	}
	l.mu.Unlock()
	if hook != nil && strings.HasPrefix(r.URL.Path, "/metal/v1/") {
		hook(r.Method, r.URL.Path)
	}
	sim.ServeHTTP(w, r)
}

// WriteFleet writes the fleet file: groups "web" and "worker" with count
// devices each per zone in ams1, ewr1 and sjc1 (6×count devices), on
// image release rel ("v1" or "v2"), one wave per zone. A wave tolerates
// three failed devices (rollout.max_failures), as an operator of a large
// fleet would set it: a device that fails after its retry then makes the
// apply exit 1 without halting the other waves, and the next apply
// replaces it. With max_failures 0 the first such device halts every
// later wave, and a 300-device fleet often needs a third apply.
func (l *Lab) WriteFleet(rel string, count int) error {
	body := FleetYAML("chaos", l.URL, rel, count, l.networkKeys())
	if l.CreateBatch > 0 {
		body += fmt.Sprintf("  create_batch: %d\n", l.CreateBatch)
	}
	return os.WriteFile(l.FleetFile, []byte(body), 0o644)
}

// FleetYAML is the fleet file WriteFleet writes, for the fleet called
// name with its images under root/images/rel; workerKeys are added to the
// worker group.
func FleetYAML(name, root, rel string, count int, workerKeys string) string {
	return fmt.Sprintf(`apiVersion: lkfleet/v1
fleet: %s
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: %s/images/%s
defaults:
  zones: [ams1, ewr1, sjc1]
groups:
  - name: web
    image: sshd
    count: %d
  - name: worker
    image: sshd
    count: %d%s
rollout:
  waves: [[ams1], [ewr1], [sjc1]]
  max_in_flight: 20
  max_unavailable: 25%%
  max_failures: 3
`, name, root, rel, count, count, workerKeys)
}

// DesiredSlots lists the slots of WriteFleet(_, count).
func DesiredSlots(count int) []string {
	var slots []string
	for _, g := range []string{"web", "worker"} {
		for _, z := range []string{"ams1", "ewr1", "sjc1"} {
			for i := 1; i <= count; i++ {
				slots = append(slots, fmt.Sprintf("%s/%s/%d", g, z, i))
			}
		}
	}
	slices.Sort(slots)
	return slots
}

// Device is what the checks read of a listed device.
type Device struct {
	ID       string          `json:"id"`
	Hostname string          `json:"hostname"`
	State    string          `json:"state"`
	Tags     []string        `json:"tags"`
	Created  string          `json:"created_at"`
	Raw      json.RawMessage `json:"-"`
}

// Tag returns the value of the tag with prefix key + "=".
func (d Device) Tag(key string) string {
	for _, t := range d.Tags {
		if v, ok := strings.CutPrefix(t, key+"="); ok {
			return v
		}
	}
	return ""
}

// get fetches one API path, retrying the faults the simulator injects.
func (l *Lab) get(ctx context.Context, path string) ([]byte, error) {
	return apiGet(ctx, l.APIURL, path)
}

// apiGet fetches one path under apiURL with the lab's token, retrying
// faults and refused connections for about a second.
func apiGet(ctx context.Context, apiURL, path string) ([]byte, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	var last error
	for range 40 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, apiURL+path, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("X-Auth-Token", Token)
		resp, err := client.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode == http.StatusOK:
				return body, nil
			case resp.StatusCode == http.StatusNotFound:
				return nil, fmt.Errorf("GET %s: 404", path)
			default:
				err = fmt.Errorf("GET %s: %s", path, resp.Status)
			}
		}
		last = err
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("lab: %w", last)
}

// Listing returns every device of the project (all fleets, foreign ones
// too) as a listing shows it, retrying injected faults.
func (l *Lab) Listing(ctx context.Context) ([]Device, error) {
	return listing(ctx, l.APIURL, l.Project())
}

// listing lists every device of project under apiURL.
func listing(ctx context.Context, apiURL, project string) ([]Device, error) {
	var all []Device
	for page := 1; ; page++ {
		body, err := apiGet(ctx, apiURL, fmt.Sprintf("projects/%s/devices?per_page=1000&page=%d", project, page))
		if err != nil {
			return nil, err
		}
		var doc struct{ Devices []json.RawMessage }
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, fmt.Errorf("lab: decode listing: %w", err)
		}
		for _, raw := range doc.Devices {
			var d Device
			if err := json.Unmarshal(raw, &d); err != nil {
				return nil, fmt.Errorf("lab: decode device: %w", err)
			}
			d.Raw = raw
			all = append(all, d)
		}
		if len(doc.Devices) < 1000 {
			return all, nil
		}
	}
}

// DeviceJSON returns GET /devices/{id} as the API answers it.
func (l *Lab) DeviceJSON(ctx context.Context, id string) ([]byte, error) {
	return l.get(ctx, "devices/"+id)
}
