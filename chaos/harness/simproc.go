package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// SimProcess is `lkfleet sim --state FILE` run as a real subprocess, so
// that it can be killed with SIGKILL, behind a recording front: a reverse
// proxy on 127.0.0.1 whose address stays the same across the simulator's
// kills and restarts (while the simulator is down the front answers 502,
// as a load balancer before a dead service would).
type SimProcess struct {
	// URL is the front's root; APIURL what lkfleet takes as --api-url.
	URL, APIURL string
	// Direct is the simulator's own API root, bypassing the front.
	Direct string
	// Project is the simulated project's id.
	Project string
	// ListLag is the simulator's list lag, told to every lkfleet run.
	ListLag time.Duration

	bin, port string
	args      []string
	front     *http.Server

	mu        sync.Mutex
	cmd       *exec.Cmd
	stderr    *bytes.Buffer
	created   []Created
	mutations []Mutation
	phase     string
	onCreated func(n int)
}

// Created is one create the simulator answered 201 through the front.
type Created struct {
	ID, Hostname, CreatedAt string
	// Fleet is the device's lkfleet:fleet tag ("" for foreign devices).
	Fleet string
}

// Mutation is one mutating API request through the front and the phase
// of the trial it came in.
type Mutation struct{ Phase, Method, Path string }

// SimProcessConfig configures StartSimProcess.
type SimProcessConfig struct {
	// Dir holds the state file and the images; Bin is the lkfleet binary.
	Dir, Bin string
	// Project is the project's id; Seed the simulator's --seed.
	Project string
	Seed    uint64
	// ListLag, ProvisionTime and DeprovisionTime are the simulator's.
	ListLag, ProvisionTime, DeprovisionTime time.Duration
}

// StartSimProcess writes the images, starts the front and the simulator.
func StartSimProcess(cfg SimProcessConfig) (*SimProcess, error) {
	imgs := filepath.Join(cfg.Dir, "images")
	for _, rel := range []string{"v1", "v2"} {
		if err := os.MkdirAll(filepath.Join(imgs, rel), 0o755); err != nil {
			return nil, err
		}
		for name, body := range map[string]string{"sshd-kernel": "kernel " + rel, "sshd-initrd.img": "initrd " + rel, "sshd-cmdline": "console=ttyS1"} {
			if err := os.WriteFile(filepath.Join(imgs, rel, name), []byte(body), 0o644); err != nil {
				return nil, err
			}
		}
	}
	p := &SimProcess{Project: cfg.Project, ListLag: cfg.ListLag, bin: cfg.Bin, port: "0", args: []string{
		"--state", filepath.Join(cfg.Dir, "sim-state.json"), "--images", imgs, "--project", cfg.Project,
		"--quiet", "--sos-listen", "", "--rate-limit", "0", "--seed", fmt.Sprint(cfg.Seed),
		"--list-lag", cfg.ListLag.String(), "--provision-time", cfg.ProvisionTime.String(),
		"--deprovision-time", cfg.DeprovisionTime.String(),
	}}
	if err := p.Start(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.Kill()
		return nil, err
	}
	p.URL = "http://" + ln.Addr().String()
	p.APIURL = p.URL + "/metal/v1/"
	target, _ := url.Parse(p.Direct)
	rp := &httputil.ReverseProxy{
		Rewrite:        func(r *httputil.ProxyRequest) { r.SetURL(target) },
		ModifyResponse: p.observe,
		// A new connection per request: none outlives a killed simulator.
		Transport: &http.Transport{DisableKeepAlives: true},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "simulator unreachable: "+err.Error(), http.StatusBadGateway)
		},
	}
	p.front = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && strings.HasPrefix(r.URL.Path, "/metal/v1/") {
			p.mu.Lock()
			p.mutations = append(p.mutations, Mutation{p.phase, r.Method, r.URL.Path})
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go p.front.Serve(ln)
	return p, nil
}

// Start starts the simulator from its state file on its port (a free one
// the first time, the same one after) and returns once it serves.
func (p *SimProcess) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("simulator already running")
	}
	cmd := exec.Command(p.bin, append([]string{"sim", "--listen", "127.0.0.1:" + p.port}, p.args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "LKFLEET_SIM_TOKEN=" + Token}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	p.stderr = &bytes.Buffer{}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start simulator: %w", err)
	}
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		line := ""
		if sc.Scan() {
			line = sc.Text()
		}
		first <- line
		io.Copy(io.Discard, out)
	}()
	var line string
	select {
	case line = <-first:
	case <-time.After(20 * time.Second):
	}
	api, ok := strings.CutPrefix(line, "PACKET_API_URL=")
	if !ok {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("simulator did not start (first line %q): %s", line, lastLine(p.stderr.String()))
	}
	u, err := url.Parse(api)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("simulator URL %q: %w", api, err)
	}
	p.port = u.Port()
	p.Direct = u.Scheme + "://" + u.Host
	p.cmd = cmd
	return nil
}

// Kill SIGKILLs the simulator and waits for it to be gone.
func (p *SimProcess) Kill() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		cmd.Process.Kill()
		cmd.Wait()
	}
}

// Close kills the simulator and stops the front.
func (p *SimProcess) Close() {
	p.Kill()
	if p.front != nil {
		p.front.Close()
	}
}

// OnCreated sets a function called with n after the front saw the n-th
// create answered 201, before that answer goes on to the client (nil
// clears it).
func (p *SimProcess) OnCreated(f func(n int)) {
	p.mu.Lock()
	p.onCreated = f
	p.mu.Unlock()
}

// SetPhase labels the mutations that follow.
func (p *SimProcess) SetPhase(name string) {
	p.mu.Lock()
	p.phase = name
	p.mu.Unlock()
}

// CreatedSoFar returns every create answered 201 so far.
func (p *SimProcess) CreatedSoFar() []Created {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.created)
}

// Mutations returns every mutating request through the front so far.
func (p *SimProcess) Mutations() []Mutation {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.mutations)
}

// observe records a create answered 201 and calls the OnCreated hook.
func (p *SimProcess) observe(resp *http.Response) error {
	r := resp.Request
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/devices") || resp.StatusCode != http.StatusCreated {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return err
	}
	var d Device
	if err := json.Unmarshal(body, &d); err != nil {
		return fmt.Errorf("front: decode a created device: %w", err)
	}
	p.mu.Lock()
	p.created = append(p.created, Created{ID: d.ID, Hostname: d.Hostname, CreatedAt: d.Created, Fleet: d.Tag("lkfleet:fleet")})
	n, hook := len(p.created), p.onCreated
	p.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return nil
}

// Env is the environment lkfleet runs with against the front.
func (p *SimProcess) Env() map[string]string {
	return map[string]string{
		"PACKET_API_URL": p.APIURL, "PACKET_AUTH_TOKEN": Token, "PACKET_PROJECT_ID": p.Project,
		"NO_COLOR": "1", "LKFLEET_LIST_LAG": p.ListLag.String(), "LKFLEET_LOCK_SETTLE": "300ms",
	}
}

// Listing lists the project's devices straight from the simulator.
func (p *SimProcess) Listing(ctx context.Context) ([]Device, error) {
	return listing(ctx, p.Direct+"/metal/v1/", p.Project)
}

// Exists reports whether GET /devices/{id} finds the device (directly).
func (p *SimProcess) Exists(ctx context.Context, id string) (bool, error) {
	_, err := apiGet(ctx, p.Direct+"/metal/v1/", "devices/"+id)
	if err != nil && strings.HasSuffix(err.Error(), ": 404") {
		return false, nil
	}
	return err == nil, err
}

// Duplicates is the simulator's own count of extra live devices per slot
// (GET /sim/stats).
func (p *SimProcess) Duplicates(ctx context.Context) (int, error) {
	body, err := apiGet(ctx, p.Direct+"/", "sim/stats")
	if err != nil {
		return 0, err
	}
	var st struct{ Duplicates int }
	err = json.Unmarshal(body, &st)
	return st.Duplicates, err
}
