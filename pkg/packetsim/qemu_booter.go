package packetsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// The metadata relay: QEMU runs this same executable, with relayArg as
// its only argument and relayEnv naming the host listener, once for every
// connection a guest opens to MetadataAddr:80. The connection is the
// relay's stdin and stdout.
const (
	relayEnv = "LKFLEET_SIM_METADATA_RELAY"
	relayArg = "lkfleet-sim-metadata-relay"
)

func init() {
	if addr := os.Getenv(relayEnv); addr != "" && len(os.Args) == 2 && os.Args[1] == relayArg {
		os.Exit(relay(addr, os.Stdin, os.Stdout))
	}
}

// relay copies between the guest's connection (in, out) and addr.
func relay(addr string, in io.Reader, out io.Writer) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 1
	}
	defer c.Close()
	go func() {
		io.Copy(c, in)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	io.Copy(out, c)
	return 0
}

// QEMUBooter is the Booter of `lkfleet sim --boot qemu`: it boots x86_64
// devices' scripts in QEMU, at most a fixed number at once. Each guest
// reaches the simulator's metadata service for its own device at
// http://169.254.169.254/ (MetadataAddr, relayed to a listener the booter
// opens on 127.0.0.1 for that boot) and reports itself by posting user
// state to the user_state_url its metadata announces: a boot ends when
// the guest posts succeeded or failed. The guest then keeps running, its
// ttyS1 connected to the device's console (SOS), until the device is
// deleted, powered off, rebooted or reinstalled, or the simulator stops.
// Other architectures keep the interpreted result (QEMU here emulates
// x86_64 only).
type QEMUBooter struct {
	qemu QEMU
	sem  chan struct{}
	log  io.Writer

	wg sync.WaitGroup // guests still running
}

// NewQEMUBooter checks that QEMU and the firmware are installed.
// concurrency bounds guests booting at once (0 = 2); guests that have
// reported in do not count. Progress lines go to log (nil = none). Close
// it when done.
func NewQEMUBooter(q QEMU, concurrency int, log io.Writer) (*QEMUBooter, error) {
	q, err := q.withDefaults()
	if err != nil {
		return nil, err
	}
	if concurrency <= 0 {
		concurrency = 2
	}
	return &QEMUBooter{qemu: q, sem: make(chan struct{}, concurrency), log: log}, nil
}

// Close waits for the guests still running; they stop when the
// simulator closes (Sim.Close) or their devices change.
func (b *QEMUBooter) Close() error {
	b.wg.Wait()
	return nil
}

func (b *QEMUBooter) logf(format string, args ...any) {
	if b.log != nil {
		fmt.Fprintf(b.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
}

// guestReport is a Booter's outcome when the guest posted its own final
// user state: the simulator records the boot and posts nothing itself.
type guestReport struct {
	state, message string
	after          time.Duration
}

func (g *guestReport) Error() string {
	return "the guest posted user state " + g.state + ": " + g.message
}

// userStateWatch sees the user states a guest posts through its metadata
// listener.
type userStateWatch struct {
	log   func(format string, args ...any)
	once  sync.Once
	final chan struct{}
	state string
	msg   string
}

// wrap passes every request to h and notes the user states h accepted.
func (u *userStateWatch) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/events" {
			h.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		r.Body = io.NopCloser(bytes.NewReader(body))
		sw := &statusWriter{ResponseWriter: w, onStatus: func(int) {}}
		h.ServeHTTP(sw, r)
		if sw.status != 0 && sw.status/100 != 2 {
			return
		}
		var in struct {
			State   string `json:"state"`
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &in) != nil {
			return
		}
		u.log("user state %s: %s", in.State, in.Message)
		if in.State == UserStateSucceeded || in.State == UserStateFailed {
			u.once.Do(func() {
				u.state, u.msg = in.State, in.Message
				close(u.final)
			})
		}
	})
}

// Boot implements Booter.
func (b *QEMUBooter) Boot(ctx context.Context, req BootRequest) (string, error) {
	if req.Arch != "" && req.Arch != "x86_64" {
		return fmt.Sprintf("booted %s (interpreted only: QEMU boots x86_64 devices, this is %s)", req.KernelURL, req.Arch), nil
	}
	running := req.Running
	if running == nil {
		running = ctx
	}
	select {
	case b.sem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	release := sync.OnceFunc(func() { <-b.sem })
	defer release()

	watch := &userStateWatch{final: make(chan struct{}), log: func(format string, args ...any) {
		b.logf("boot %s: guest posted "+format, append([]any{req.Hostname}, args...)...)
	}}
	gio := guestIO{console: req.Console}
	var md *http.Server
	if req.Metadata != nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("boot %s in QEMU: metadata listener: %w", req.Hostname, err)
		}
		md = &http.Server{Handler: watch.wrap(req.Metadata), ReadHeaderTimeout: 10 * time.Second}
		go md.Serve(ln)
		gio.metadata = ln.Addr().String()
	}
	stopMetadata := func() {
		if md != nil {
			md.Close()
		}
	}
	b.logf("boot %s (%s): starting QEMU", req.Hostname, req.DeviceID)
	p, err := b.qemu.start(req.DeviceID, req.Script, "", gio)
	if err != nil {
		stopMetadata()
		return "", fmt.Errorf("boot %s in QEMU: %w", req.Hostname, err)
	}
	res, err := p.supervise(running, watch.final)
	if err == nil && !res.Reported {
		err = &QEMUError{Reason: fmt.Sprintf("qemu boot %s: the guest stopped after %v without posting user state succeeded or failed to http://%s/events", req.DeviceID, res.Elapsed.Round(100*time.Millisecond), MetadataAddr), Boot: res}
	}
	if err != nil {
		p.cleanup()
		stopMetadata()
		req.release()
		b.logf("boot %s: failed: %s", req.Hostname, firstLine(err.Error()))
		return "", fmt.Errorf("boot %s in QEMU: %w", req.Hostname, err)
	}
	// Reported: the guest keeps running (and its console stays live)
	// until the device leaves this boot.
	release()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		select {
		case <-p.exited:
		case <-running.Done():
		}
		p.cleanup()
		stopMetadata()
		req.release()
		b.logf("boot %s: guest stopped", req.Hostname)
	}()
	after := res.ReportedAfter.Round(100 * time.Millisecond)
	b.logf("boot %s: guest posted %s after %v", req.Hostname, watch.state, after)
	return "", &guestReport{state: watch.state, message: watch.msg, after: after}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
