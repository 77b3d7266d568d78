package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lkfleet/lkfleet/pkg/ipxe"
	"github.com/lkfleet/lkfleet/pkg/packetsim"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// The simulated API every scenario runs against: R requests/s, a bucket
// of B, devices active T after their create.
const (
	rateR     = 50
	burstB    = 20
	provT     = 5 * time.Second
	deprovT   = 200 * time.Millisecond
	benchTok  = "bench-token-0123456789abcdef0123"
	fleetName = "bench"
)

// limits are a simulator's rate limit R, bucket B and provision time T.
type limits struct {
	R float64
	B int
	T time.Duration
}

// defaultLimits are those of DESIGN section 10.
var defaultLimits = limits{rateR, burstB, provT}

// createBound is the request bound of N creates under l: the first B
// requests pass at once, the rest at R/s, and the last device then
// provisions for T. Nothing that sends one create per device can finish
// sooner; it leaves out the planning requests and the waiting listings.
func (l limits) createBound(n int) time.Duration {
	return time.Duration(float64(max(n-l.B, 0))/l.R*float64(time.Second)) + l.T
}

// settle waits until a bucket drained by the last run is full again.
func (l limits) settle() { time.Sleep(time.Duration(float64(time.Second) * float64(l.B) / l.R * 1.5)) }

// bed is one fresh simulator plus a fleet file pointing at it. Every
// scenario gets its own, so counters such as the peak of requests in
// flight belong to that scenario alone.
type bed struct {
	sim    *packetsim.Sim
	http   *http.Server
	url    string // http://127.0.0.1:PORT
	apiURL string // url + "/metal/v1/"
	rec    *recorder
	dir    string
	fleet  string // fleet file path
	images string // URL of the images directory
	env    []string
	bin    string
	lim    limits
}

// newBed starts a simulator with the benchmark's limits serving imagesDir
// at /images/, and writes a fleet of n devices into dir.
func newBed(bin, dir, imagesDir string, n int) (*bed, error) {
	return newBedWith(bin, dir, imagesDir, n, defaultLimits)
}

// newBedWith is newBed with the simulator limits lim.
func newBedWith(bin, dir, imagesDir string, n int, lim limits) (*bed, error) {
	sim := packetsim.New(packetsim.Config{
		Token:           benchTok,
		RateLimit:       lim.R,
		Burst:           lim.B,
		ProvisionTime:   lim.T,
		DeprovisionTime: deprovT,
		ImagesDir:       imagesDir,
		Quiet:           true,
		BootWorkers:     16,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sim.Close()
		return nil, err
	}
	b := &bed{sim: sim, dir: dir, fleet: filepath.Join(dir, "fleet.yml"), bin: bin, rec: &recorder{next: sim}, lim: lim}
	b.url = "http://" + ln.Addr().String()
	b.apiURL = b.url + "/metal/v1/"
	b.images = b.url + "/images"
	b.http = &http.Server{Handler: b.rec, ReadHeaderTimeout: 10 * time.Second}
	go b.http.Serve(ln)
	b.env = []string{
		"PACKET_API_URL=" + b.apiURL,
		"PACKET_AUTH_TOKEN=" + benchTok,
		"PACKET_PROJECT_ID=" + sim.Project(),
		"NO_COLOR=1",
		"LKFLEET_LIST_LAG=0", // the bench simulator hides nothing from listings
		// The local simulator stores a write in about a millisecond, so
		// the lease's settle delay can be 200 ms instead of the 2 s a
		// remote API needs (docs/benchmarks.md, docs/reliability.md),
		// unless the server's rate limit itself spaces the lease's read
		// and write further apart than half of it (R = 5: 200 ms apart).
		"LKFLEET_LOCK_SETTLE=" + lockSettle(lim.R).String(),
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
	}
	if err := b.writeFleet("v1", n); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// lockSettle is the lease's settle delay for a server limit of r
// requests/s: 200 ms, or more when one request every 1/r seconds makes
// the lease's read-to-write gap longer than half of that.
func lockSettle(r float64) time.Duration {
	settle := 200 * time.Millisecond
	if r > 0 {
		if d := time.Duration(6 / r * float64(time.Second)); d > settle {
			settle = d
		}
	}
	return settle
}

func (b *bed) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b.http.Shutdown(ctx)
	b.sim.Close()
}

// fleetText is the benchmark fleet: groups spread over two facilities in
// one wave (one group up to 20,000 devices, more beyond: a group has at
// most 10,000 devices per zone), rebuilt by reboot with the whole fleet allowed down at once
// (the nightly lab that is rebuilt wholesale).
const fleetText = `apiVersion: lkfleet/v1
fleet: %s
project: ${PACKET_PROJECT_ID}
images:
  sshd:
    base_url: %s/%s
defaults:
  machine: baremetal_0
  always_pxe: true
  tags: [bench]
groups:
%srollout:
  max_unavailable: "100%%"
  rebuild: reboot
`

// writeFleet writes a fleet of n devices (n even: half per facility) booting
// image release rel.
func (b *bed) writeFleet(rel string, n int) error {
	if n%2 != 0 {
		return fmt.Errorf("fleet of %d devices: the benchmark fleet needs an even size", n)
	}
	var groups strings.Builder
	for g, left := 1, n/2; left > 0; g++ {
		name := "node"
		if g > 1 {
			name = fmt.Sprintf("node%d", g)
		}
		count := min(left, 10000)
		fmt.Fprintf(&groups, "  - name: %s\n    image: sshd\n    count: %d\n    zones: [ams1, ewr1]\n", name, count)
		left -= count
	}
	return os.WriteFile(b.fleet, fmt.Appendf(nil, fleetText, fleetName, b.images, rel, groups.String()), 0o644)
}

// writeImages creates releases v1 and v2 of image sshd under dir.
func writeImages(dir string) error {
	for _, rel := range []string{"v1", "v2"} {
		d := filepath.Join(dir, rel)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		for name, body := range map[string]string{
			"sshd-kernel":     "kernel " + rel,
			"sshd-initrd.img": "initrd " + rel,
			"sshd-cmdline":    "console=ttyS1 page_poison=1 release=" + rel,
		} {
			if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

// runResult is one finished lkfleet process.
type runResult struct {
	Args   []string
	Exit   int
	Wall   time.Duration
	CPU    time.Duration // user + system time of the child (rusage)
	MaxRSS int64         // peak resident set of the child (VmHWM), bytes
	Out    string        // last lines of stdout and stderr, for failures
	Stats  delta         // what the simulator saw while it ran
	// Timeline is every API request it sent, timed from its start.
	Timeline []reqEvent
}

// cli runs the built lkfleet binary as a child process against the bed's
// simulator and measures it: the real process, its own CPU time and peak
// RSS (from rusage), and the requests the simulator counted meanwhile.
func (b *bed) cli(ctx context.Context, args ...string) (runResult, error) {
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Env = b.env
	if prof := os.Getenv("BENCH_PROFILE"); prof != "" && len(args) > 0 {
		// Profiles of each lkfleet run, named by bed and command
		// (docs/benchmarks.md, "Where the CPU goes"); a later run of the
		// same command on the bed overwrites them.
		name := filepath.Join(prof, filepath.Base(b.dir)+"-"+args[0])
		cmd.Env = append(slices.Clip(b.env), "LKFLEET_CPUPROFILE="+name+".cpu.pprof", "LKFLEET_MEMPROFILE="+name+".mem.pprof")
	}
	cmd.Dir = b.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	before := b.sim.Stats()
	start := time.Now()
	b.rec.begin(start)
	err := cmd.Start()
	var hwm int64
	if err == nil {
		stop := make(chan struct{})
		done := make(chan int64)
		go func() { done <- watchHWM(cmd.Process.Pid, stop) }()
		err = cmd.Wait()
		close(stop)
		hwm = <-done
	}
	r := runResult{Args: args, Wall: time.Since(start), MaxRSS: hwm}
	r.Stats = diff(before, b.sim.Stats())
	r.Timeline = b.rec.end()
	r.Out = tail(out.String(), 30)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Exit = ee.ExitCode()
	case err != nil:
		return r, fmt.Errorf("run lkfleet %s: %w", strings.Join(args, " "), err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return r, nil
}

// watchHWM polls the child's VmHWM (the peak resident set of its own
// address space) until stop is closed and returns the highest value seen,
// in bytes. rusage's ru_maxrss cannot be used alone: Go starts children
// with vfork semantics (CLONE_VM), and Linux folds the peak RSS of the
// address space the child had before exec — the parent's — into the
// child's ru_maxrss, so a bench process holding 20,000 seeded devices
// would be charged to every child. The last poll is at most 2 ms before
// the child exits; VmHWM only grows, so that misses at most the growth of
// those last milliseconds.
func watchHWM(pid int, stop <-chan struct{}) int64 {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	var peak int64
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		if data, err := os.ReadFile(path); err == nil {
			for _, line := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					if kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64); err == nil {
						peak = max(peak, kb*1024)
					}
				}
			}
		}
		select {
		case <-stop:
			return peak
		case <-t.C:
		}
	}
}

// must runs lkfleet and fails unless it exits with want.
func (b *bed) must(ctx context.Context, want int, args ...string) (runResult, error) {
	r, err := b.cli(ctx, args...)
	if err == nil && r.Exit != want {
		err = fmt.Errorf("lkfleet %s: exit %d, want %d; output ends:\n%s", strings.Join(args, " "), r.Exit, want, r.Out)
	}
	return r, err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// delta is the difference between two simulator stats snapshots.
type delta struct {
	Requests   map[string]int `json:"requests"`
	Status     map[string]int `json:"status"`
	Total      int            `json:"total"`
	Throttled  int            `json:"throttled"`
	Creates    int            `json:"creates"`
	Duplicates int            `json:"duplicates"` // after, not a difference
	PeakFlight int            `json:"peak_in_flight"`
}

func diff(a, b packetsim.Stats) delta {
	d := delta{Requests: map[string]int{}, Status: map[string]int{}}
	for k, v := range b.Requests {
		if n := v - a.Requests[k]; n > 0 {
			d.Requests[k] = n
			d.Total += n
		}
	}
	for k, v := range b.Status {
		if n := v - a.Status[k]; n > 0 {
			d.Status[k] = n
		}
	}
	d.Throttled = b.Throttled - a.Throttled
	d.Creates = b.Creates - a.Creates
	d.Duplicates = b.Duplicates
	d.PeakFlight = b.PeakInFlight
	return d
}

// Route names the simulator counts requests under.
const (
	routeList   = "GET /projects/{id}/devices"
	routeCreate = "POST /projects/{id}/devices"
	routeGet    = "GET /devices/{id}"
	routePut    = "PUT /devices/{id}"
	routeAction = "POST /devices/{id}/actions"
)

// desired renders the bed's fleet file into the devices it wants, with
// the same library calls the CLI makes (spec.Load, spec.Expand,
// ipxe.FetchCmdlines, ipxe.Render), so their tags, rev, userdata and
// attributes are what an apply would send.
func (b *bed) desired(ctx context.Context) ([]spec.Device, error) {
	data, err := os.ReadFile(b.fleet)
	if err != nil {
		return nil, err
	}
	fleet, err := spec.Load(b.fleet, data, spec.LoadOptions{Getenv: func(k string) string { return envValue(b.env, k) }})
	if err != nil {
		return nil, fmt.Errorf("load fleet: %w", err)
	}
	desired, err := spec.Expand(fleet)
	if err != nil {
		return nil, fmt.Errorf("expand fleet: %w", err)
	}
	cmdlines, err := ipxe.FetchCmdlines(ctx, &http.Client{Timeout: ipxe.RequestTimeout}, desired)
	if err != nil {
		return nil, err
	}
	desired, err = ipxe.Render(desired, cmdlines, nil)
	if err != nil {
		return nil, fmt.Errorf("render fleet: %w", err)
	}
	return desired, nil
}

// seedFleet puts the fleet's devices into the simulator exactly as a
// finished apply leaves them (active, booted). Callers prove the match by
// running `lkfleet plan --detailed-exitcode` (exit 0: no changes).
func (b *bed) seedFleet(ctx context.Context) (int, error) {
	desired, err := b.desired(ctx)
	if err != nil {
		return 0, fmt.Errorf("seed: %w", err)
	}
	_, err = b.seedDevices(desired)
	return len(desired), err
}

// seedDevices seeds the given desired devices as applied and booted an
// hour ago and returns their ids.
func (b *bed) seedDevices(desired []spec.Device) ([]string, error) {
	seeds := make([]packetsim.SeedDevice, len(desired))
	created := time.Now().Add(-time.Hour)
	for i, d := range desired {
		seeds[i] = packetsim.SeedDevice{
			Hostname:      d.Hostname,
			Tags:          d.Tags(),
			Plan:          d.Machine,
			Zone:          d.Zone,
			AlwaysPXE:     d.AlwaysPXE,
			IPXEScriptURL: d.IPXEScriptURL,
			Userdata:      d.APIUserdata(),
			CreatedAt:     created,
			UserState:     packetsim.UserStateSucceeded,
		}
	}
	return b.sim.Seed(seeds...)
}

// seedForeign adds n devices the fleet does not own.
func (b *bed) seedForeign(n int) error {
	seeds := make([]packetsim.SeedDevice, n)
	for i := range seeds {
		seeds[i] = packetsim.SeedDevice{
			Hostname:  fmt.Sprintf("other-%05d", i+1),
			Tags:      []string{"team:other"},
			Zone:      []string{"ams1", "ewr1", "sjc1"}[i%3],
			UserState: packetsim.UserStateSucceeded,
		}
	}
	_, err := b.sim.Seed(seeds...)
	return err
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// settle waits until the server's bucket is full again, so each measured
// run starts from the state the bounds assume.
func settle() { defaultLimits.settle() }
