package packetsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Booter boots a device's script for real once the simulator has
// interpreted it and found its kernel and initrds (Config.Booter). It
// returns the text of the device's succeeded user state on success; an error
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
	// Console is the device's serial console: a real guest's ttyS1.
	Console *Console
	// Metadata serves the metadata service for this device (GET
	// /metadata, /userdata; POST /events takes user state).
	Metadata http.Handler
	// Running ends when the device leaves this boot (deleted, powered
	// off, rebooted, reinstalled) or the simulator stops: a guest may run
	// until then (nil: the Boot context).
	Running context.Context
	release func() // frees Running's watcher early (nil = nothing to free)
}

// realBoot hands an interpreted, good boot to the configured Booter.
func (s *Sim) realBoot(ctx context.Context, snap bootSnap, b Boot) Boot {
	running, stop := s.bootContext(ctx, snap.id, snap.gen)
	detail, err := s.cfg.Booter.Boot(ctx, BootRequest{
		DeviceID: b.DeviceID, Hostname: b.Hostname, Arch: snap.arch,
		Script: b.script, KernelURL: b.KernelURL,
		Console: s.consoles.get(snap.id), Metadata: s.MetadataHandler(b.DeviceID),
		Running: running, release: stop,
	})
	var gr *guestReport
	switch {
	case errors.As(err, &gr):
		b.reported = true
		b.OK = gr.state == UserStateSucceeded
		if b.OK {
			b.detail = fmt.Sprintf("booted %s in QEMU; the guest posted user state %s after %v: %s", b.KernelURL, gr.state, gr.after, gr.message)
		} else {
			b.Error = "the guest posted user state failed: " + gr.message
		}
		return b
	case err != nil:
		stop()
		b.OK, b.Error = false, err.Error()
		return b
	}
	stop()
	b.detail = detail
	return b
}

// The network of a QEMU guest (user-mode networking): the guest gets an
// address from DHCP in GuestNet, reaches the host's loopback servers
// through GuestGateway, and its device's metadata service at
// MetadataAddr port 80. The network is link-local because QEMU forwards
// only addresses inside the guest's network, and 169.254.169.254 is the
// address metadata clients conventionally use.
const (
	GuestNet     = "169.254.169.0/24"
	GuestGateway = "169.254.169.2"
	MetadataAddr = "169.254.169.254"
)

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
// networking (GuestNet) with a virtio NIC, and two serial ports written to
// files. The firmware's own screen is copied to the first port (SeaBIOS's
// serial console) so that an iPXE error shows up in the log; Packet's
// console, ttyS1, is the second, and it is also a two-way line to the
// device's Console when the simulator boots the guest.
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
	p, err := q.start(name, script, extraArgs, guestIO{})
	if err != nil {
		return nil, err
	}
	defer p.cleanup()
	res, err := p.supervise(ctx, done)
	if err != nil || !res.Reported {
		return res, err
	}
	t := time.NewTimer(q.Grace)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
	case <-ctx.Done():
	}
	p.kill()
	return res, nil
}

// guestIO is what a guest is connected to besides its log files.
type guestIO struct {
	// console receives ttyS1's output and feeds its input.
	console *Console
	// metadata is a host address (127.0.0.1:PORT) that the guest reaches
	// as MetadataAddr:80, one relay process per connection.
	metadata string
}

// qemuProc is one running emulator.
type qemuProc struct {
	q       QEMU
	name    string
	res     *QEMUBoot
	cmd     *exec.Cmd
	serial  [2]string
	start   time.Time
	stderr  bytes.Buffer
	exited  chan struct{} // closed once QEMU exited and ttyS1 was drained
	waitErr error
	rmDir   string // removed by cleanup ("" = keep)
	unplug  func() // disconnects the console's input
}

// start launches QEMU. ttyS0 goes to a file; ttyS1 is QEMU's stdio,
// copied to a file and to the console, with the console's input as its
// input: a bidirectional serial line.
func (q QEMU) start(name, script, extraArgs string, gio guestIO) (*qemuProc, error) {
	dir, rmDir, err := q.bootDir(name)
	if err != nil {
		return nil, fmt.Errorf("qemu boot %s: %w", name, err)
	}
	p := &qemuProc{q: q, name: name, res: &QEMUBoot{Script: GuestScript(script, extraArgs)}, exited: make(chan struct{}), rmDir: rmDir, unplug: func() {}}
	fail := func(err error) (*qemuProc, error) {
		if rmDir != "" {
			os.RemoveAll(rmDir)
		}
		return nil, fmt.Errorf("qemu boot %s: %w", name, err)
	}
	scriptPath := filepath.Join(dir, "script.ipxe")
	portPath := filepath.Join(dir, "sercon-port")
	p.serial = [2]string{filepath.Join(dir, "ttyS0.log"), filepath.Join(dir, "ttyS1.log")}
	// SeaBIOS reads etc/sercon-port as a little-endian integer: 0x3f8 is COM1.
	if err := os.WriteFile(portPath, []byte{0xf8, 0x03}, 0o644); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(scriptPath, []byte(p.res.Script), 0o644); err != nil {
		return fail(err)
	}
	netdev, env, err := guestNetdev(gio.metadata)
	if err != nil {
		return fail(err)
	}
	p.res.Args = []string{q.Binary,
		"-accel", q.Accel, "-m", fmt.Sprint(q.MemoryMiB),
		"-kernel", q.Firmware, "-initrd", scriptPath,
		"-display", "none", "-monitor", "none",
		"-serial", "file:" + p.serial[0],
		"-chardev", "stdio,id=ttyS1,signal=off", "-serial", "chardev:ttyS1",
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0",
		"-no-reboot",
		"-fw_cfg", "name=etc/sercon-port,file=" + portPath,
	}
	log1, err := os.Create(p.serial[1])
	if err != nil {
		return fail(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		log1.Close()
		return fail(err)
	}
	cmd := exec.Command(p.res.Args[0], p.res.Args[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = outW, &p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		log1.Close()
		outR.Close()
		outW.Close()
		return fail(err)
	}
	p.cmd = cmd
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		log1.Close()
		outR.Close()
		outW.Close()
		return fail(err)
	}
	outW.Close()
	var sink io.Writer = log1
	if gio.console != nil {
		sink = io.MultiWriter(log1, gio.console)
		p.unplug = gio.console.SetInput(stdin)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		io.Copy(sink, outR)
		outR.Close()
		log1.Close()
	}()
	go func() {
		p.waitErr = cmd.Wait()
		<-drained
		close(p.exited)
	}()
	return p, nil
}

// bootDir is where a boot's files go: DIR/<name> (emptied first) when
// Dir is set, kept for the user; else a temporary directory, returned as
// rmDir too so that cleanup removes it.
func (q QEMU) bootDir(name string) (dir, rmDir string, err error) {
	if q.Dir == "" {
		dir, err = os.MkdirTemp("", "lkfleet-qemu-")
		return dir, dir, err
	}
	dir = filepath.Join(q.Dir, name)
	if err := os.RemoveAll(dir); err != nil {
		return "", "", err
	}
	return dir, "", os.MkdirAll(dir, 0o755)
}

// guestNetdev is a guest's -netdev and the environment QEMU runs with.
// With a metadata address (127.0.0.1:PORT) the guest's connections to
// MetadataAddr:80 go to the relay, which reads the address from relayEnv.
func guestNetdev(metadata string) (netdev string, env []string, err error) {
	netdev = "user,id=n0,net=" + GuestNet
	if metadata == "" {
		return netdev, nil, nil
	}
	// /proc/PID/exe runs this very binary even if its file was
	// replaced since (a rebuild while the simulator runs).
	exe := fmt.Sprintf("/proc/%d/exe", os.Getpid())
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			return "", nil, fmt.Errorf("metadata relay: %w", err)
		}
	}
	// QEMU spawns the command for every connection the guest opens
	// (a chardev target would serve only the first one).
	netdev += ",guestfwd=tcp:" + MetadataAddr + ":80-cmd:" + qemuOpt(shellQuote(exe)+" "+relayArg)
	return netdev, append(os.Environ(), relayEnv+"="+metadata), nil
}

// shellQuote quotes s for a POSIX-shell-like command line (QEMU parses
// the cmd: of a guestfwd that way).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// qemuOpt escapes a value inside a QEMU option list: commas are doubled.
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func (p *qemuProc) readLogs() {
	for i, f := range p.serial {
		p.res.Serial[i], _ = os.ReadFile(f)
	}
	p.res.Elapsed = time.Since(p.start)
}

// kill stops QEMU (if it still runs) and waits for it.
func (p *qemuProc) kill() {
	p.cmd.Process.Kill()
	<-p.exited
	p.readLogs()
}

// cleanup kills QEMU and removes a temporary directory.
func (p *qemuProc) cleanup() {
	p.kill()
	p.unplug()
	if p.rmDir != "" {
		os.RemoveAll(p.rmDir)
	}
}

// supervise waits until QEMU exits, done is closed (Reported: QEMU is
// left running), Timeout passes, early signs of a failed boot show, or
// ctx ends; in the last three cases QEMU is stopped and a *QEMUError with
// the serial tails is returned.
func (p *qemuProc) supervise(ctx context.Context, done <-chan struct{}) (*QEMUBoot, error) {
	res, name := p.res, p.name
	deadline := time.NewTimer(p.q.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.exited:
			p.readLogs()
			select {
			case <-done: // the guest reported, then powered off at once
				res.Reported, res.ReportedAfter = true, res.Elapsed
				return res, nil
			default:
			}
			if p.waitErr != nil {
				return res, &QEMUError{Reason: fmt.Sprintf("qemu boot %s: %s exited: %v: %s", name, filepath.Base(p.q.Binary), p.waitErr, strings.TrimSpace(p.stderr.String())), Boot: res}
			}
			return res, nil
		case <-done:
			res.Reported, res.ReportedAfter = true, time.Since(p.start)
			p.readLogs()
			return res, nil
		case <-deadline.C:
			p.kill()
			return res, &QEMUError{Reason: fmt.Sprintf("qemu boot %s: timed out after %v", name, p.q.Timeout), Boot: res}
		case <-ctx.Done():
			p.kill()
			return res, &QEMUError{Reason: fmt.Sprintf("qemu boot %s: %v", name, ctx.Err()), Boot: res}
		case <-tick.C:
			p.readLogs()
			for _, f := range failPatterns {
				if bytes.Contains(res.Serial[0], []byte(f.text)) || bytes.Contains(res.Serial[1], []byte(f.text)) {
					p.kill()
					return res, &QEMUError{Reason: fmt.Sprintf("qemu boot %s: %s (after %v)", name, f.reason, res.Elapsed.Round(100*time.Millisecond)), Boot: res}
				}
			}
		}
	}
}
