package packetsim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Booter boots a device's script for real once the simulator has
// interpreted it and found its kernel and initrds (Config.Booter). It
// returns the text of the device's user_state event on success; an error
// becomes a failed user state with the error's text.
type Booter interface {
	Boot(ctx context.Context, req BootRequest) (detail string, err error)
}

// BootRequest is what a Booter gets: the device and the script it boots,
// as served to the machine (after following chains), with host URLs.
type BootRequest struct {
	DeviceID  string
	Hostname  string
	Arch      string // the plan's architecture: "x86_64" or "arm64"
	Script    string
	KernelURL string
}

// realBoot hands an interpreted, good boot to the configured Booter.
func (s *Sim) realBoot(ctx context.Context, snap bootSnap, b Boot) Boot {
	detail, err := s.cfg.Booter.Boot(ctx, BootRequest{
		DeviceID: b.DeviceID, Hostname: b.Hostname, Arch: snap.arch,
		Script: b.script, KernelURL: b.KernelURL,
	})
	if err != nil {
		b.OK, b.Error = false, err.Error()
		return b
	}
	b.detail = detail
	return b
}

// GuestGateway is the host as seen from inside QEMU's user-mode network.
const GuestGateway = "10.0.2.2"

// loopbackURL matches the host part of a loopback URL: the copy of a
// script handed to QEMU reaches the host's servers through the gateway.
var loopbackURL = regexp.MustCompile(`(?i)(https?://)(127\.0\.0\.1|localhost|\[::1\])([:/\s]|$)`)

// GuestScript returns the copy of script that is handed to QEMU: every
// loopback URL (127.0.0.1, localhost, [::1]) points at GuestGateway
// instead, and extraArgs (if any) is appended to the kernel's arguments.
// The script lkfleet rendered, and every request made on the host, keep
// using 127.0.0.1.
func GuestScript(script, extraArgs string) string {
	script = loopbackURL.ReplaceAllString(script, "${1}"+GuestGateway+"${3}")
	if extraArgs == "" {
		return script
	}
	lines := strings.Split(script, "\n")
	at := -1
	for i, l := range lines {
		switch f := strings.Fields(l); {
		case len(f) == 0:
		case f[0] == "kernel" || f[0] == "imgexec" || f[0] == "chain" && at < 0:
			at = i
		}
	}
	if at < 0 {
		return script
	}
	l := lines[at]
	cmd, tail, found := strings.Cut(l, " ||")
	cmd = strings.TrimRight(cmd, " \t") + " " + extraArgs
	if found {
		cmd += " ||" + tail
	}
	lines[at] = cmd
	return strings.Join(lines, "\n")
}

// QEMU boots iPXE scripts on real firmware: Debian's ipxe.lkrn as the
// kernel of qemu-system-x86_64, the script as its initrd, user-mode
// networking with a virtio NIC, and two serial ports written to files. The
// firmware's own screen is copied to the first port (SeaBIOS's serial
// console) so that an iPXE error shows up in the log; Packet's console,
// ttyS1, is the second.
type QEMU struct {
	// Binary is the emulator (default qemu-system-x86_64 on PATH).
	Binary string
	// Firmware is ipxe.lkrn (default: the first of DefaultFirmware that exists).
	Firmware string
	// Accel is QEMU's accelerator (default "tcg": KVM is not trusted
	// unless the caller has probed it).
	Accel string
	// MemoryMiB is the guest's memory (default 512).
	MemoryMiB int
	// Timeout bounds one boot from start to power off (default 3 min).
	Timeout time.Duration
	// Grace is how long a guest that has reported in gets to power off
	// before it is stopped (default 20 s).
	Grace time.Duration
	// Dir keeps each boot's script and serial logs in Dir/<name>/
	// ("" = a temporary directory removed after the boot).
	Dir string
}

// DefaultFirmware lists where Debian and Ubuntu's ipxe package put ipxe.lkrn.
var DefaultFirmware = []string{"/usr/lib/ipxe/ipxe.lkrn", "/usr/share/ipxe/ipxe.lkrn", "/boot/ipxe.lkrn"}

// QEMUBoot is the outcome of one QEMU run.
type QEMUBoot struct {
	// Args is the emulator's command line.
	Args []string
	// Script is the copy of the script handed to QEMU.
	Script string
	// Serial holds what was written to ttyS0 (firmware, and the kernel if
	// its console is there) and ttyS1.
	Serial [2][]byte
	// Elapsed is the time from start to exit.
	Elapsed time.Duration
	// Reported is true when the run ended because done was closed;
	// ReportedAfter is when that happened.
	Reported      bool
	ReportedAfter time.Duration
}

// Tail returns the last n lines of each non-empty serial log, cleaned of
// terminal escapes, each under a heading naming the port.
func (b *QEMUBoot) Tail(n int) string {
	var sb strings.Builder
	for i, s := range b.Serial {
		lines := ConsoleLines(s)
		if len(lines) == 0 {
			continue
		}
		lines = lines[max(0, len(lines)-n):]
		fmt.Fprintf(&sb, "--- ttyS%d (last %d lines) ---\n%s\n", i, len(lines), strings.Join(lines, "\n"))
	}
	if sb.Len() == 0 {
		return "(both serial logs are empty)"
	}
	return strings.TrimRight(sb.String(), "\n")
}

// QEMUError is a boot that did not finish; its message ends with the
// serial logs' tails.
type QEMUError struct {
	Reason string
	Boot   *QEMUBoot
}

func (e *QEMUError) Error() string {
	return e.Reason + "\nserial log tail:\n" + e.Boot.Tail(15)
}

var ansiEscape = regexp.MustCompile(`\x1b(\[[0-9;?]*[A-Za-z]|[c()][0-9A-Za-z]?)`)

// ConsoleLines splits a serial log into readable lines: terminal escapes,
// carriage returns, backspaced characters and blank lines are dropped.
func ConsoleLines(b []byte) []string {
	s := ansiEscape.ReplaceAllString(string(b), "")
	var out []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		for strings.Contains(l, "\b") {
			i := strings.IndexByte(l, '\b')
			if i == 0 {
				l = l[1:]
				continue
			}
			l = l[:i-1] + l[i+1:]
		}
		if l = strings.TrimRight(l, " \t"); strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// failPatterns end a boot early: each says the guest will never finish.
var failPatterns = []struct{ text, reason string }{
	{"Booting from Hard Disk", "the iPXE script failed and the firmware moved on to the next boot device"},
	{"No bootable device", "the firmware found nothing to boot"},
	{"Kernel panic", "the kernel panicked"},
}

func (q QEMU) withDefaults() (QEMU, error) {
	if q.Binary == "" {
		q.Binary = "qemu-system-x86_64"
	}
	if _, err := exec.LookPath(q.Binary); err != nil {
		return q, fmt.Errorf("qemu: %w (install the qemu-system-x86 package)", err)
	}
	if q.Firmware == "" {
		for _, f := range DefaultFirmware {
			if _, err := os.Stat(f); err == nil {
				q.Firmware = f
				break
			}
		}
		if q.Firmware == "" {
			return q, fmt.Errorf("qemu: no ipxe.lkrn in %s (install the ipxe package)", strings.Join(DefaultFirmware, ", "))
		}
	}
	if q.Accel == "" {
		q.Accel = "tcg"
	}
	if q.MemoryMiB <= 0 {
		q.MemoryMiB = 512
	}
	if q.Timeout <= 0 {
		q.Timeout = 3 * time.Minute
	}
	if q.Grace <= 0 {
		q.Grace = 20 * time.Second
	}
	return q, nil
}

// Check reports whether the emulator and the firmware are installed.
func (q QEMU) Check() error {
	_, err := q.withDefaults()
	return err
}

// Run boots script (a host script: GuestScript is applied to it, with
// extraArgs) and waits until QEMU exits, or done is closed and the guest
// has had Grace to power off, or Timeout passes, or ctx ends. A run that
// ends in QEMU's exit or in done returns a nil error: what the guest
// printed is for the caller to judge. Timeouts, early signs of a failed
// boot (the firmware moving on past the script, a kernel panic) and
// cancellation return a *QEMUError with the serial logs' tails.
func (q QEMU) Run(ctx context.Context, name, script, extraArgs string, done <-chan struct{}) (*QEMUBoot, error) {
	q, err := q.withDefaults()
	if err != nil {
		return nil, err
	}
	var dir string
	if q.Dir != "" {
		dir = filepath.Join(q.Dir, name)
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("qemu boot %s: %w", name, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("qemu boot %s: %w", name, err)
		}
	} else {
		if dir, err = os.MkdirTemp("", "lkfleet-qemu-"); err != nil {
			return nil, fmt.Errorf("qemu boot %s: %w", name, err)
		}
		defer os.RemoveAll(dir)
	}
	res := &QEMUBoot{Script: GuestScript(script, extraArgs)}
	scriptPath := filepath.Join(dir, "script.ipxe")
	portPath := filepath.Join(dir, "sercon-port")
	serial := [2]string{filepath.Join(dir, "ttyS0.log"), filepath.Join(dir, "ttyS1.log")}
	// SeaBIOS reads etc/sercon-port as a little-endian integer: 0x3f8 is COM1.
	if err := os.WriteFile(portPath, []byte{0xf8, 0x03}, 0o644); err != nil {
		return nil, fmt.Errorf("qemu boot %s: %w", name, err)
	}
	if err := os.WriteFile(scriptPath, []byte(res.Script), 0o644); err != nil {
		return nil, fmt.Errorf("qemu boot %s: %w", name, err)
	}
	res.Args = []string{q.Binary,
		"-accel", q.Accel, "-m", fmt.Sprint(q.MemoryMiB),
		"-kernel", q.Firmware, "-initrd", scriptPath,
		"-display", "none",
		"-serial", "file:" + serial[0], "-serial", "file:" + serial[1],
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
		"-no-reboot",
		"-fw_cfg", "name=etc/sercon-port,file=" + portPath,
	}
	var stderr bytes.Buffer
	cmd := exec.Command(res.Args[0], res.Args[1:]...)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu boot %s: %w", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		cmd.Process.Kill()
		return <-exited
	}
	readLogs := func() {
		for i, p := range serial {
			res.Serial[i], _ = os.ReadFile(p)
		}
		res.Elapsed = time.Since(start)
	}
	deadline := time.NewTimer(q.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var grace <-chan time.Time
	for {
		select {
		case err := <-exited:
			readLogs()
			if err != nil && !res.Reported {
				return res, &QEMUError{Reason: fmt.Sprintf("qemu boot %s: %s exited: %v: %s", name, filepath.Base(q.Binary), err, strings.TrimSpace(stderr.String())), Boot: res}
			}
			return res, nil
		case <-done:
			res.Reported, res.ReportedAfter, done = true, time.Since(start), nil
			t := time.NewTimer(q.Grace)
			defer t.Stop()
			grace = t.C
		case <-grace:
			stop()
			readLogs()
			return res, nil
		case <-deadline.C:
			stop()
			readLogs()
			return res, &QEMUError{Reason: fmt.Sprintf("qemu boot %s: timed out after %v", name, q.Timeout), Boot: res}
		case <-ctx.Done():
			stop()
			readLogs()
			return res, &QEMUError{Reason: fmt.Sprintf("qemu boot %s: %v", name, ctx.Err()), Boot: res}
		case <-tick.C:
			if res.Reported {
				continue
			}
			readLogs()
			for _, p := range failPatterns {
				if bytes.Contains(res.Serial[0], []byte(p.text)) || bytes.Contains(res.Serial[1], []byte(p.text)) {
					stop()
					readLogs()
					return res, &QEMUError{Reason: fmt.Sprintf("qemu boot %s: %s (after %v)", name, p.reason, res.Elapsed.Round(100*time.Millisecond)), Boot: res}
				}
			}
		}
	}
}

// QEMUBooter is the Booter of `lkfleet sim --boot qemu`: it boots x86_64
// devices' scripts in QEMU, at most a fixed number at once, and a boot
// succeeds only when the guest calls back. The callback URL is appended
// to the kernel's arguments in the copy of the script given to QEMU as
// lkfleet.callback=http://10.0.2.2:PORT/sim/callback/<device id>/<nonce>;
// the booter serves it on 127.0.0.1:PORT, which QEMU's user-mode network
// reaches through the gateway. Other architectures keep the interpreted
// result (QEMU here emulates x86_64 only).
type QEMUBooter struct {
	qemu QEMU
	sem  chan struct{}
	srv  *http.Server
	ln   net.Listener
	log  io.Writer

	mu      sync.Mutex
	waiting map[string]*callback // path → the boot waiting for it
}

// callback is one boot's rendezvous with its guest.
type callback struct {
	once sync.Once
	done chan struct{}
	body string
}

// NewQEMUBooter checks that QEMU and the firmware are installed and starts
// the callback listener. concurrency bounds simultaneous QEMU runs (0 = 2).
// Progress lines go to log (nil = none). Close it when done.
func NewQEMUBooter(q QEMU, concurrency int, log io.Writer) (*QEMUBooter, error) {
	q, err := q.withDefaults()
	if err != nil {
		return nil, err
	}
	if concurrency <= 0 {
		concurrency = 2
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("qemu booter: listen for callbacks: %w", err)
	}
	b := &QEMUBooter{qemu: q, sem: make(chan struct{}, concurrency), ln: ln, log: log, waiting: map[string]*callback{}}
	b.srv = &http.Server{Handler: http.HandlerFunc(b.serveCallback), ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(ln)
	return b, nil
}

// CallbackBase is the callback server's root as the host sees it
// (http://127.0.0.1:PORT); guests use the same port on GuestGateway.
func (b *QEMUBooter) CallbackBase() string { return "http://" + b.ln.Addr().String() }

// Close stops the callback listener. Boots in flight end with their
// context.
func (b *QEMUBooter) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return b.srv.Shutdown(ctx)
}

func (b *QEMUBooter) serveCallback(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<10))
	b.mu.Lock()
	cb := b.waiting[r.URL.Path]
	b.mu.Unlock()
	if cb == nil {
		http.Error(w, "no boot is waiting for "+r.URL.Path, http.StatusNotFound)
		return
	}
	cb.once.Do(func() {
		cb.body = strings.TrimSpace(string(body))
		close(cb.done)
	})
	io.WriteString(w, "ok\n")
}

func (b *QEMUBooter) logf(format string, args ...any) {
	if b.log != nil {
		fmt.Fprintf(b.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// Boot implements Booter.
func (b *QEMUBooter) Boot(ctx context.Context, req BootRequest) (string, error) {
	if req.Arch != "" && req.Arch != "x86_64" {
		return fmt.Sprintf("booted %s (interpreted only: QEMU boots x86_64 devices, this is %s)", req.KernelURL, req.Arch), nil
	}
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-b.sem }()

	var nonce [8]byte
	rand.Read(nonce[:])
	path := "/sim/callback/" + req.DeviceID + "/" + hex.EncodeToString(nonce[:])
	cb := &callback{done: make(chan struct{})}
	b.mu.Lock()
	b.waiting[path] = cb
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.waiting, path)
		b.mu.Unlock()
	}()
	_, port, _ := net.SplitHostPort(b.ln.Addr().String())
	arg := "lkfleet.callback=http://" + GuestGateway + ":" + port + path
	b.logf("boot %s (%s): starting QEMU", req.Hostname, req.DeviceID)
	res, err := b.qemu.Run(ctx, req.DeviceID, req.Script, arg, cb.done)
	if err != nil {
		b.logf("boot %s: failed: %s", req.Hostname, firstLine(err.Error()))
		return "", fmt.Errorf("boot %s in QEMU: %w", req.Hostname, err)
	}
	if !res.Reported {
		err := &QEMUError{Reason: fmt.Sprintf("qemu boot %s: the guest stopped after %v without calling back to %s", req.DeviceID, res.Elapsed.Round(100*time.Millisecond), arg), Boot: res}
		b.logf("boot %s: failed: %s", req.Hostname, firstLine(err.Error()))
		return "", fmt.Errorf("boot %s in QEMU: %w", req.Hostname, err)
	}
	b.logf("boot %s: guest reported in after %v", req.Hostname, res.ReportedAfter.Round(100*time.Millisecond))
	return fmt.Sprintf("booted %s in QEMU in %v; guest reported: %s", req.KernelURL, res.ReportedAfter.Round(100*time.Millisecond), cb.body), nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
