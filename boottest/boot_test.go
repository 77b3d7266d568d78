package boottest

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// The boot test needs root-installed Debian packages and a minute of CPU, so
// it runs only under `make boot-test`, which sets LKFLEET_BOOT_TEST=1: it
// installs what is missing first (as root), and a machine that has the
// packages but cannot boot fails instead of skipping.
const (
	envRun   = "LKFLEET_BOOT_TEST"  // 1: run, installing prerequisites first
	envBin   = "LKFLEET_BIN"        // a built lkfleet (default: go build)
	envCache = "LKFLEET_BOOT_CACHE" // where boot-deps.sh unpacks the kernel (default ../.cache/boot)
)

// imageCmdline is the image's own kernel command line (served as
// boot-cmdline, fetched by lkfleet when it renders).
const imageCmdline = "boottest=1"

// defaultArgs is what lkfleet's default x86_64 script puts before it.
const defaultArgs = "ip=dhcp nomodeset ro serial console=ttyS1,115200 "

// prereqs are the installed pieces a real boot needs.
type prereqs struct {
	kernel  KernelTree
	busybox string
	qemu    packetsim.QEMU
}

func findPrereqs(t *testing.T) prereqs {
	t.Helper()
	if os.Getenv(envRun) != "1" {
		// About a minute of QEMU boots: `make test` stays quick, and CI
		// runs them through `make boot-test`.
		t.Skip("boot test: real QEMU boots run with `make boot-test` (LKFLEET_BOOT_TEST=1)")
	}
	cache := os.Getenv(envCache)
	if cache == "" {
		cache = filepath.Join("..", ".cache", "boot")
	}
	cmd := exec.Command(filepath.Join("..", "scripts", "boot-deps.sh"), cache)
	out, err := cmd.CombinedOutput()
	t.Logf("scripts/boot-deps.sh: %s", strings.TrimSpace(string(out)))
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ee.ExitCode() == 77:
		t.Skipf("boot test: cannot install the prerequisites here: %s", strings.TrimSpace(string(out)))
	case err != nil:
		t.Fatalf("boot test: scripts/boot-deps.sh failed: %v", err)
	}
	// The install script succeeded: anything still missing is a failure.
	skip := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("boot test: "+format, args...)
	}
	var p prereqs
	if err := p.qemu.Check(); err != nil {
		skip("%v", err)
	}
	p.busybox = "/bin/busybox"
	if err := checkStatic(p.busybox); err != nil {
		skip("%v (install busybox-static)", err)
	}
	if _, err := exec.LookPath("cpio"); err != nil {
		skip("cpio: %v", err)
	}
	k, err := FindKernel(filepath.Join(cache, "kernel"))
	if err != nil {
		skip("%v (scripts/boot-deps.sh unpacks one)", err)
	}
	p.kernel = k
	// Generous: two TCG guests share two cores with whatever else runs.
	p.qemu.Timeout = 150 * time.Second
	p.qemu.Grace = 20 * time.Second
	return p
}

// checkStatic fails unless path is a statically linked executable: the
// initramfs has no C library.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("busybox: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("busybox: %s is dynamically linked", path)
		}
	}
	return nil
}

// lkfleetBin returns a built lkfleet.
func lkfleetBin(t *testing.T) string {
	t.Helper()
	if b := os.Getenv(envBin); b != "" {
		abs, err := filepath.Abs(b)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	bin := filepath.Join(t.TempDir(), "lkfleet")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/lkfleet/lkfleet/cmd/lkfleet").CombinedOutput()
	if err != nil {
		t.Fatalf("go build lkfleet: %v\n%s", err, out)
	}
	return bin
}

// sim is a running `lkfleet sim --boot qemu`.
type sim struct {
	cmd  *exec.Cmd
	env  []string // PACKET_* for lkfleet commands
	url  string   // http://127.0.0.1:PORT
	tok  string
	proj string
	mu   sync.Mutex
	log  bytes.Buffer // everything after the PACKET_* lines
	done chan struct{}
}

func startSim(t *testing.T, bin, images, bootDir string) *sim {
	t.Helper()
	cmd := exec.Command(bin, "sim", "--listen", "127.0.0.1:0", "--quiet", "--images", images,
		"--provision-time", "1s", "--rate-limit", "0",
		"--boot", "qemu", "--boot-concurrency", "2", "--boot-timeout", "150s", "--boot-dir", bootDir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start lkfleet sim: %v", err)
	}
	s := &sim{cmd: cmd, done: make(chan struct{})}
	sc := bufio.NewScanner(out)
	for len(s.env) < 3 && sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "PACKET_API_URL":
			s.url = strings.TrimSuffix(v, "/metal/v1/")
		case "PACKET_AUTH_TOKEN":
			s.tok = v
		case "PACKET_PROJECT_ID":
			s.proj = v
		default:
			continue
		}
		s.env = append(s.env, sc.Text())
	}
	if len(s.env) < 3 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("lkfleet sim printed no PACKET_* lines: %v\n%s", sc.Err(), stderr.String())
	}
	go func() {
		defer close(s.done)
		for sc.Scan() {
			s.mu.Lock()
			fmt.Fprintln(&s.log, sc.Text())
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGINT)
		waited := make(chan error, 1)
		go func() { <-s.done; waited <- cmd.Wait() }()
		select {
		case err := <-waited:
			if err != nil {
				t.Errorf("lkfleet sim: %v\n%s", err, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("lkfleet sim did not stop within 30 s of SIGINT")
		}
		t.Logf("lkfleet sim log:\n%s", s.logText())
	})
	return s
}

func (s *sim) logText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// lkfleet runs the CLI with the simulator's environment.
func (s *sim) lkfleet(t *testing.T, bin string, args ...string) (string, error) {
	t.Helper()
	start := time.Now()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Env = append(cmd.Env, "NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	t.Logf("lkfleet %s: %v in %v", strings.Join(args, " "), errOrOK(err), time.Since(start).Round(100*time.Millisecond))
	return string(out), err
}

func errOrOK(err error) string {
	if err != nil {
		return err.Error()
	}
	return "ok"
}

// deviceStates lists the project's devices and returns each hostname's
// newest user state (user.<code>) event (state and body). Only 127.0.0.1 is contacted.
func (s *sim) deviceStates(t *testing.T) map[string][2]string {
	t.Helper()
	req, _ := http.NewRequest("GET", s.url+"/metal/v1/projects/"+s.proj+"/devices?per_page=100", nil)
	req.Header.Set("X-Auth-Token", s.tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("list devices: %v", err)
	}
	defer resp.Body.Close()
	var doc struct {
		Devices []struct {
			Hostname string `json:"hostname"`
			Events   []struct {
				Type, State, Body string
			} `json:"provisioning_events"`
		} `json:"devices"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("list devices: %v", err)
	}
	out := map[string][2]string{}
	for _, d := range doc.Devices {
		for _, e := range d.Events { // newest first
			if strings.HasPrefix(e.Type, "user.") { // user.<code>, as on the service
				out[d.Hostname] = [2]string{e.State, e.Body}
				break
			}
		}
	}
	return out
}

// variant is one script booted straight in QEMU.
type variant struct {
	name    string
	script  string // the host script handed (via GuestScript) to QEMU
	cmdline string // the exact /proc/cmdline expected
	broken  bool   // the boot must fail; wantInErr must be in the message
	wantErr string
}

// result is one variant's boot, for the summary.
type result struct {
	name    string
	elapsed time.Duration
	cmdline string
	err     error
}

// checkBoot judges a finished QEMU run of v from its serial logs: the
// marker line on ttyS1 (Packet's console) with exactly the expected
// command line, an address from DHCP, and a clean power off. Every
// failure carries the serial logs' tails.
func checkBoot(v variant, res *packetsim.QEMUBoot, runErr error) (string, error) {
	if runErr != nil {
		return "", runErr
	}
	fail := func(format string, args ...any) (string, error) {
		return "", &packetsim.QEMUError{Reason: fmt.Sprintf("boot %s: ", v.name) + fmt.Sprintf(format, args...), Boot: res}
	}
	find := func(port int, marker string) (string, bool) {
		for _, l := range packetsim.ConsoleLines(res.Serial[port]) {
			if _, rest, ok := strings.Cut(l, marker); ok {
				return rest, true
			}
		}
		return "", false
	}
	got, ok := find(1, MarkerCmdline)
	if !ok {
		if _, on0 := find(0, MarkerCmdline); on0 {
			return fail("the console is not ttyS1: the guest's output went to ttyS0")
		}
		return fail("the guest never printed %q on ttyS1", strings.TrimSpace(MarkerCmdline))
	}
	if got != v.cmdline {
		return fail("kernel command line\n  got  %q\n  want %q", got, v.cmdline)
	}
	if !strings.Contains(" "+got+" ", " console=ttyS1") {
		return fail("command line %q has no console on ttyS1", got)
	}
	if ip, _ := find(1, MarkerNet); !strings.HasPrefix(ip, "10.0.2.") {
		return fail("no address from DHCP (net line %q)", ip)
	}
	if _, ok := find(1, MarkerDone); !ok {
		return fail("the guest did not finish its init")
	}
	return got, nil
}

// TestRealBoot boots what lkfleet renders on Debian's iPXE in QEMU: each
// script variant directly, broken scripts (which must fail with the
// serial log in the message), and a fleet applied with --wait booted
// against `lkfleet sim --boot qemu`.
func TestRealBoot(t *testing.T) {
	p := findPrereqs(t)
	start := time.Now()
	bin := lkfleetBin(t)
	work := t.TempDir()
	images := filepath.Join(work, "images")
	for _, d := range []string{images, filepath.Join(images, "guest")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	kernel, err := os.ReadFile(p.kernel.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "boot-kernel"), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(images, "boot-cmdline"), []byte(imageCmdline), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := BuildInitramfs(p.kernel, p.busybox, filepath.Join(images, "boot-initrd.img")); err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel %s, initramfs built, lkfleet ready in %v", p.kernel.Version, time.Since(start).Round(100*time.Millisecond))

	s := startSim(t, bin, images, filepath.Join(work, "sim-boots"))
	base := s.url + "/images"

	// Render the variants with lkfleet itself.
	fleet := filepath.Join(work, "variants.yml")
	writeFleet(t, fleet, strings.ReplaceAll(variantsFleet, "IMAGES", base))
	if out, err := s.lkfleet(t, bin, "render", "-f", fleet, "--out", filepath.Join(images, "scripts")); err != nil {
		t.Fatalf("lkfleet render: %v\n%s", err, out)
	}
	script := func(host string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(images, "scripts", host+".ipxe"))
		if err != nil {
			t.Fatalf("rendered script of %s: %v", host, err)
		}
		return string(b)
	}
	// Script URL delivery: iPXE fetches the script over HTTP. The copy it
	// fetches is the guest copy (gateway URLs), like everything QEMU gets.
	urlScript := script("url-ams1-1")
	if err := os.WriteFile(filepath.Join(images, "guest", "url-ams1-1.ipxe"), []byte(packetsim.GuestScript(urlScript, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	plain := script("plain-ams1-1")
	variants := []variant{
		{name: "default-x86", script: plain, cmdline: defaultArgs + imageCmdline},
		{name: "kernel-args", script: script("args-ams1-2"), cmdline: defaultArgs + imageCmdline + " lkfleet.slot=args/ams1/2 lkfleet.host=args-ams1-2"},
		{name: "custom-template", script: script("custom-ams1-1"), cmdline: "console=ttyS1,115200 custom=custom-ams1-1 " + imageCmdline},
		{name: "script-url", script: "#!ipxe\ndhcp\nchain " + base + "/guest/url-ams1-1.ipxe\n", cmdline: defaultArgs + imageCmdline + " delivery=url host=url-ams1-1"},
		{name: "broken-missing-initrd", broken: true, wantErr: "Kernel panic",
			script: dropLines(plain, "initrd ")},
		{name: "broken-wrong-console", broken: true, wantErr: "console is not ttyS1",
			script: strings.Replace(plain, "console=ttyS1,115200", "console=ttyS0,115200", 1)},
		{name: "broken-bad-url", broken: true, wantErr: "nope-kernel",
			script: strings.Replace(plain, "/boot-kernel", "/nope-kernel", 1)},
	}
	for _, v := range variants[:4] {
		if !strings.Contains(v.script, "#!ipxe") || (v.name != "script-url" && !strings.Contains(v.script, base)) {
			t.Fatalf("variant %s: unexpected rendered script:\n%s", v.name, v.script)
		}
	}
	if strings.Contains(urlScript, "10.0.2.2") || !strings.Contains(urlScript, "127.0.0.1") {
		t.Fatalf("the rendered script must keep 127.0.0.1; only QEMU's copy uses the gateway:\n%s", urlScript)
	}

	var (
		mu      sync.Mutex
		results []result
	)
	sem := make(chan struct{}, 2) // two TCG guests on two cores
	t.Run("variants", func(t *testing.T) {
		for _, v := range variants {
			t.Run(v.name, func(t *testing.T) {
				t.Parallel()
				sem <- struct{}{}
				defer func() { <-sem }()
				q := p.qemu
				q.Dir = filepath.Join(work, "direct")
				res, runErr := q.Run(context.Background(), v.name, v.script, "", nil)
				got, err := checkBoot(v, res, runErr)
				var elapsed time.Duration
				if res != nil {
					elapsed = res.Elapsed
				}
				mu.Lock()
				results = append(results, result{v.name, elapsed, got, err})
				mu.Unlock()
				switch {
				case !v.broken && err != nil:
					t.Fatalf("%v", err)
				case !v.broken:
					t.Logf("booted in %v, cmdline %q", elapsed.Round(100*time.Millisecond), got)
				case err == nil:
					t.Fatalf("broken script booted cleanly; it must fail:\n%s", v.script)
				case !strings.Contains(err.Error(), "serial log tail:") || !strings.Contains(err.Error(), v.wantErr):
					t.Fatalf("broken script failed without the expected serial log tail (want %q):\n%v", v.wantErr, err)
				default:
					t.Logf("failed as it must, in %v:\n%v", elapsed.Round(100*time.Millisecond), err)
				}
			})
		}
	})

	t.Run("sim-apply-wait-booted", func(t *testing.T) {
		e2e := filepath.Join(work, "e2e.yml")
		writeFleet(t, e2e, strings.ReplaceAll(e2eFleet, "IMAGES", base))
		if out, err := s.lkfleet(t, bin, "render", "-f", e2e, "--out", filepath.Join(images, "scripts")); err != nil {
			t.Fatalf("lkfleet render: %v\n%s", err, out)
		}
		t0 := time.Now()
		out, err := s.lkfleet(t, bin, "apply", "-f", e2e, "--auto-approve", "--wait", "booted", "--timeout", "6m", "-o", "plain", "--poll-interval", "1s")
		if err != nil {
			t.Fatalf("lkfleet apply --wait booted: %v\n%s", err, out)
		}
		took := time.Since(t0)
		states := s.deviceStates(t)
		for _, host := range []string{"e2e-ams1-1", "e2eurl-ams1-1"} {
			st := states[host]
			// The guest posts its /proc/cmdline, which names its slot.
			if st[0] != "succeeded" || !strings.Contains(st[1], "guest reported:") || !strings.Contains(st[1], "lkfleet.callback=http://10.0.2.2:") {
				t.Fatalf("%s: user state %q %q, want succeeded with the guest's report", host, st[0], st[1])
			}
		}
		if !strings.Contains(states["e2e-ams1-1"][1], "lkfleet.slot=e2e/ams1/1") {
			t.Fatalf("e2e-ams1-1 reported %q, want its slot argument", states["e2e-ams1-1"][1])
		}
		mu.Lock()
		results = append(results, result{name: "sim: apply --wait booted (2 devices)", elapsed: took, cmdline: strings.TrimPrefix(states["e2e-ams1-1"][1], "")})
		mu.Unlock()

		// A device whose guest never reports in fails with the console's tail.
		writeFleet(t, e2e, strings.ReplaceAll(e2eFleet+e2eBrokenGroup, "IMAGES", base))
		out, err = s.lkfleet(t, bin, "apply", "-f", e2e, "--auto-approve", "--wait", "booted", "--timeout", "6m", "-o", "plain", "--poll-interval", "1s", "--failed-retries", "0")
		if err == nil {
			t.Fatalf("apply of a fleet with a broken boot succeeded:\n%s", out)
		}
		st := s.deviceStates(t)["broken-ams1-1"]
		if st[0] != "failed" || !strings.Contains(st[1], "serial log tail:") || !strings.Contains(st[1], "Kernel panic") {
			t.Fatalf("broken-ams1-1: user state %q %q, want failed with the serial log tail", st[0], st[1])
		}
		t.Logf("broken device failed as it must: %s", firstLines(st[1], 3))
	})

	sort.Slice(results, func(i, j int) bool { return results[i].name < results[j].name })
	var sb strings.Builder
	fmt.Fprintf(&sb, "real boots (TCG, %s, kernel %s):\n", filepath.Base(p.qemuBinary()), p.kernel.Version)
	for _, r := range results {
		status := "ok"
		if r.err != nil {
			status = "failed: " + firstLines(r.err.Error(), 1)
		}
		fmt.Fprintf(&sb, "  %-38s %6.1fs  %s  %s\n", r.name, r.elapsed.Seconds(), status, r.cmdline)
	}
	fmt.Fprintf(&sb, "total %v", time.Since(start).Round(100*time.Millisecond))
	t.Log(sb.String())
}

func (p prereqs) qemuBinary() string {
	if p.qemu.Binary != "" {
		return p.qemu.Binary
	}
	return "qemu-system-x86_64"
}

func writeFleet(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func dropLines(s, prefix string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(l, prefix) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], " | ")
}

// variantsFleet has one group per script variant; IMAGES is the
// simulator's /images URL (always 127.0.0.1).
const variantsFleet = `apiVersion: lkfleet/v1
fleet: boottest
project: ${PACKET_PROJECT_ID}
images:
  boot:
    base_url: IMAGES
defaults:
  machine: c3.small.x86
  zone: ams1
groups:
  - name: plain
    image: boot
    count: 1
  - name: args
    image: boot
    count: 2
    kernel_args: "lkfleet.slot={{.Slot}} lkfleet.host={{.Hostname}}"
  - name: custom
    image: boot
    count: 1
    ipxe_template: |
      #!ipxe
      dhcp
      echo custom template for {{.Hostname}}
      kernel {{.KernelURL}} console=ttyS1,115200 custom={{.Hostname}} {{.Cmdline}}
      initrd {{.InitrdURL}}
      boot
  - name: url
    image: boot
    count: 1
    kernel_args: "delivery=url host={{.Hostname}}"
    ipxe_script_url: "IMAGES/scripts/{{.Hostname}}.ipxe"
`

// e2eFleet is applied against lkfleet sim --boot qemu: one device gets
// its script as userdata, one through ipxe_script_url.
const e2eFleet = `apiVersion: lkfleet/v1
fleet: boote2e
project: ${PACKET_PROJECT_ID}
images:
  boot:
    base_url: IMAGES
defaults:
  machine: c3.small.x86
  zone: ams1
groups:
  - name: e2e
    image: boot
    count: 1
    kernel_args: "lkfleet.slot={{.Slot}}"
  - name: e2eurl
    image: boot
    count: 1
    ipxe_script_url: "IMAGES/scripts/{{.Hostname}}.ipxe"
`

// e2eBrokenGroup boots without an initrd: the kernel panics and the guest
// never reports in.
const e2eBrokenGroup = `  - name: broken
    image: boot
    count: 1
    ipxe_template: |
      #!ipxe
      dhcp
      kernel {{.KernelURL}} console=ttyS1,115200 {{.Cmdline}}
      boot
`
