package boottest

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
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
	if ip, _ := find(1, MarkerNet); !strings.HasPrefix(ip, strings.TrimSuffix(packetsim.GuestGateway, "2")) {
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

	keys := filepath.Join(work, "keys")
	projectKey := newSSHKey(t, filepath.Join(keys, "project"))
	newSSHKey(t, filepath.Join(keys, "stranger"))
	s := startSim(t, bin, images, filepath.Join(work, "sim-boots"))
	s.registerKey(t, projectKey)
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
	if strings.Contains(urlScript, packetsim.GuestGateway) || !strings.Contains(urlScript, "127.0.0.1") {
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
		devs := s.devices(t)
		for _, host := range []string{"e2e-ams1-1", "e2eurl-ams1-1"} {
			st := devs[host].states
			// The guest posts running from its init, then succeeded with
			// its kernel release and command line.
			if len(st) < 2 || st[0][0] != "succeeded" || st[1][0] != "running" || !strings.Contains(st[0][1], "kernel "+p.kernel.Version) || !strings.Contains(st[0][1], "hostname "+host) {
				t.Fatalf("%s: user states %q, want running then succeeded posted by the guest", host, st)
			}
			if strings.Contains(st[0][1], "lkfleet.callback") {
				t.Fatalf("%s: the kernel command line still carries a callback: %q", host, st[0][1])
			}
		}
		if st := devs["e2e-ams1-1"].states[0][1]; !strings.Contains(st, "lkfleet.slot=e2e/ams1/1") {
			t.Fatalf("e2e-ams1-1 reported %q, want its slot argument", st)
		}
		mu.Lock()
		results = append(results, result{name: "sim: apply --wait booted (2 devices)", elapsed: took, cmdline: devs["e2e-ams1-1"].states[0][1]})
		mu.Unlock()

		// The console over SSH, with the real OpenSSH client.
		dev := devs["e2e-ams1-1"]
		out, err = s.lkfleet(t, bin, "console", "e2e-ams1-1", "-f", e2e, "--print")
		host, port, perr := net.SplitHostPort(dev.SOS)
		if err != nil || perr != nil || host != "127.0.0.1" || strings.TrimSpace(out) != "ssh -p "+port+" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -- "+dev.ID+"@127.0.0.1" {
			t.Fatalf("lkfleet console --print: %v %v, sos %q:\n%s", err, perr, dev.SOS, out)
		}
		t0 = time.Now()
		c := startSSH(t, filepath.Join(keys, "project"), port, dev.ID)
		c.waitFor(t, "Linux version "+p.kernel.Version, 60*time.Second) // the kernel banner, replayed
		c.waitFor(t, Prompt, 60*time.Second)
		mark := c.len()
		io.WriteString(c.stdin, "uname -r\r")
		answer := c.waitFor(t, "\n"+p.kernel.Version, 60*time.Second, mark)
		c.stop(t)
		t.Logf("ssh console after `uname -r`:\n%s", strings.Join(packetsim.ConsoleLines([]byte(answer)), "\n"))
		t.Logf("ssh console: banner, prompt and `uname -r` → %s in %v", p.kernel.Version, time.Since(t0).Round(100*time.Millisecond))
		mu.Lock()
		results = append(results, result{name: "sim: ssh console, uname -r", elapsed: time.Since(t0), cmdline: p.kernel.Version})
		mu.Unlock()

		// A key that is not in the project is refused.
		code, stderr := refusedSSH(t, filepath.Join(keys, "stranger"), port, dev.ID)
		if code != 255 || !strings.Contains(stderr, "Permission denied") || !strings.Contains(stderr, "is not one of project "+s.proj) {
			t.Fatalf("ssh with a key outside the project: exit %d, stderr:\n%s", code, stderr)
		}

		// A guest whose check fails posts failed with a message, and one
		// that never reports fails with the console's tail.
		writeFleet(t, e2e, strings.ReplaceAll(e2eFleet+e2eBrokenGroup+e2eCheckFailGroup, "IMAGES", base))
		out, err = s.lkfleet(t, bin, "apply", "-f", e2e, "--auto-approve", "--wait", "booted", "--timeout", "6m", "-o", "plain", "--poll-interval", "1s", "--failed-retries", "0")
		if err == nil {
			t.Fatalf("apply of a fleet with a broken boot succeeded:\n%s", out)
		}
		const checkMsg = "check failed: the metadata says hostname checkfail-ams1-1, expected nobody"
		if !strings.Contains(out, checkMsg) {
			t.Fatalf("apply does not report the guest's failure message %q:\n%s", checkMsg, out)
		}
		devs = s.devices(t)
		if st := devs["checkfail-ams1-1"].states; len(st) < 2 || st[0][0] != "failed" || !strings.Contains(st[0][1], checkMsg) || st[1][0] != "running" {
			t.Fatalf("checkfail-ams1-1: user states %q, want running then failed with the message", st)
		}
		st := devs["broken-ams1-1"].states
		if len(st) == 0 || st[0][0] != "failed" || !strings.Contains(st[0][1], "serial log tail:") || !strings.Contains(st[0][1], "Kernel panic") {
			t.Fatalf("broken-ams1-1: user states %q, want failed with the serial log tail", st)
		}
		t.Logf("broken device failed as it must: %s", firstLines(st[0][1], 3))

		// The failed guest is still up on its console; deleting the device
		// stops it and ends the session cleanly.
		cf := devs["checkfail-ams1-1"]
		c = startSSH(t, filepath.Join(keys, "project"), port, cf.ID)
		c.waitFor(t, Prompt, 60*time.Second)
		s.deleteDevice(t, cf.ID)
		if code, stderr := c.waitExit(t, 30*time.Second); code != 0 || !strings.Contains(stderr, "the device was deleted") {
			t.Fatalf("ssh after the device was deleted: exit %d, stderr:\n%s", code, stderr)
		}
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

// e2eCheckFailGroup boots a guest whose check fails: it expects another
// hostname than its metadata gives.
const e2eCheckFailGroup = `  - name: checkfail
    image: boot
    count: 1
    kernel_args: "boottest.expect-hostname=nobody"
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
