package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

func init() { commands = append(commands, newSimCmd) }

// simOptions are the flags of lkfleet sim.
type simOptions struct {
	listen              string
	token               string
	tokenFile           string
	project             string
	rateLimit           float64
	burst               int
	provisionTime       time.Duration
	deprovisionTime     time.Duration
	faultRate           float64
	ambiguousCreateRate float64
	failProvisionRate   float64
	listLag             time.Duration
	capacity            int
	images              string
	state               string
	seed                uint64
	allowRemoteFetch    bool
	quiet               bool
	boot                string
	bootConcurrency     int
	bootTimeout         time.Duration
	bootDir             string
	market              simMarketOptions
	background          bool
	pidFile             string
	logFile             string
	sosListen           string
	sosHostKey          string
}

func newSimCmd(env *Env) *cobra.Command {
	o := &simOptions{}
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run a local Packet API simulator",
		Long: `Run a stateful, in-memory Packet (Equinix Metal) API on this machine.

The first line of output is PACKET_API_URL=...; generated credentials follow
as PACKET_AUTH_TOKEN=... and PACKET_PROJECT_ID=... lines, then
LKFLEET_SIM_URL=... (the root, where --images are served at /images/).
Then one line is logged per request unless --quiet.

To use it from the same shell, start it with --background: it returns once
the simulator serves and prints those settings as export lines, so
eval "$(lkfleet sim --background ...)" sets them; 'lkfleet sim stop' ends it.

Devices boot their iPXE scripts (userdata or ipxe_script_url) and post user
state events. With --boot qemu, x86_64 scripts also boot for real under
iPXE in QEMU, and a device succeeds only when its guest posts user state
succeeded through its metadata service at http://169.254.169.254/
(docs/boot-test.md). Every device's serial console is served over SSH
(--sos-listen; the device's sos field gives the address).
The accepted token comes from $LKFLEET_SIM_TOKEN or --token-file (a
token you give is never printed; with --background it reaches the
background simulator through its environment); --token is for tests only,
as ps shows it. Stop with Ctrl-C; --state keeps devices across restarts.`,
		Example: `  eval "$(lkfleet sim --background --listen 127.0.0.1:0 --images ./out --provision-time 2s)"
  lkfleet plan -f fleet.yml
  lkfleet sim stop

  lkfleet sim --listen 127.0.0.1:8080 --images ./out --rate-limit 50 --burst 20   # in the foreground`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runSim(cmd, env, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve on (port 0 picks a free port)")
	f.StringVar(&o.token, "token", "", "the accepted X-Auth-Token, for tests: other users see it in ps (default: $"+simTokenEnv+", --token-file, or generated and printed)")
	f.StringVar(&o.tokenFile, "token-file", "", "read the accepted X-Auth-Token from FILE (first line)")
	f.StringVar(&o.project, "project", "", "the project UUID (default: generated and printed)")
	f.Float64Var(&o.rateLimit, "rate-limit", 20, "requests per second allowed per token; 0 = unlimited")
	f.IntVar(&o.burst, "burst", 40, "requests a token may send at once (token bucket size)")
	f.DurationVar(&o.provisionTime, "provision-time", 5*time.Second, "time from create to active")
	f.DurationVar(&o.deprovisionTime, "deprovision-time", time.Second, "time a deleted device stays deprovisioning")
	f.Float64Var(&o.faultRate, "fault-rate", 0, "probability of a 500/502/503, dropped connection or truncated body per request")
	f.Float64Var(&o.ambiguousCreateRate, "ambiguous-create-rate", 0, "probability that a create makes the device and then fails the response")
	f.Float64Var(&o.failProvisionRate, "fail-provision-rate", 0, "probability that a new device ends failed")
	f.DurationVar(&o.listLag, "list-lag", 0, "how long new devices stay missing from listings")
	f.IntVar(&o.capacity, "capacity", 0, "devices per facility and plan (0 = plenty)")
	f.StringVar(&o.images, "images", "", "directory to serve at /images/")
	f.StringVar(&o.state, "state", "", "file to load devices from and save them to")
	f.Uint64Var(&o.seed, "seed", 1, "seed for ids and faults (same seed and requests, same answers)")
	f.BoolVar(&o.allowRemoteFetch, "allow-remote-fetch", false, "let boots fetch scripts and artifacts from non-loopback hosts")
	f.BoolVar(&o.quiet, "quiet", false, "do not log requests")
	f.StringVar(&o.boot, "boot", "interpret", "how devices boot: interpret (check the script and its files) or qemu (also boot x86_64 scripts under iPXE in QEMU; the guest must post its user state through the metadata service)")
	f.IntVar(&o.bootConcurrency, "boot-concurrency", 2, "QEMU boots at once with --boot qemu")
	f.DurationVar(&o.bootTimeout, "boot-timeout", 3*time.Minute, "time a QEMU guest has to post user state succeeded or failed before the simulator posts failed")
	f.StringVar(&o.bootDir, "boot-dir", "", "keep each QEMU boot's script and serial logs in DIR/<device id>/ (default: discarded)")
	o.market.addFlags(cmd)
	addBackgroundFlags(cmd, o)
	cmd.AddCommand(newSimStopCmd(env))
	f.StringVar(&o.sosListen, "sos-listen", "127.0.0.1:0", `address of the SOS server (serial consoles over SSH, project keys); "" = none`)
	f.StringVar(&o.sosHostKey, "sos-host-key", "", "OpenSSH private key file the SOS server uses as its host key, created if missing (default: a new key at every start)")
	return cmd
}

func (o *simOptions) validate() error {
	var errs []error
	for _, p := range []struct {
		name string
		v    float64
	}{{"--fault-rate", o.faultRate}, {"--ambiguous-create-rate", o.ambiguousCreateRate}, {"--fail-provision-rate", o.failProvisionRate}} {
		if p.v < 0 || p.v > 1 {
			errs = append(errs, fmt.Errorf("%s must be between 0 and 1, got %g", p.name, p.v))
		}
	}
	if o.rateLimit < 0 || o.burst < 0 || o.capacity < 0 {
		errs = append(errs, errors.New("--rate-limit, --burst and --capacity must not be negative"))
	}
	if o.rateLimit > 0 && o.burst == 0 {
		errs = append(errs, errors.New("--burst must be at least 1 when --rate-limit is set"))
	}
	if o.boot != "interpret" && o.boot != "qemu" {
		errs = append(errs, fmt.Errorf("--boot must be interpret or qemu, got %q", o.boot))
	}
	if o.bootConcurrency < 1 || o.bootTimeout <= 0 {
		errs = append(errs, errors.New("--boot-concurrency must be at least 1 and --boot-timeout positive"))
	}
	if o.provisionTime < 0 || o.deprovisionTime < 0 || o.listLag < 0 {
		errs = append(errs, errors.New("--provision-time, --deprovision-time and --list-lag must not be negative"))
	}
	if o.images != "" {
		// A typo here would only show as 404s once devices boot.
		if fi, err := os.Stat(o.images); err != nil || !fi.IsDir() {
			errs = append(errs, fmt.Errorf("--images %s: not a directory", o.images))
		}
	}
	return errors.Join(errs...)
}

// simTokenEnv names the variable that gives lkfleet sim its token without
// putting it on the command line, where ps shows it.
const simTokenEnv = "LKFLEET_SIM_TOKEN"

// maxTokenFile bounds what --token-file reads: a token is one short line.
const maxTokenFile = 4096

// resolveToken picks the token: --token, then --token-file, then the
// environment; "" means generate one.
func (o *simOptions) resolveToken(env *Env) error {
	switch {
	case o.token != "" && o.tokenFile != "":
		return errors.New("--token and --token-file are exclusive")
	case o.token != "":
		return nil
	case o.tokenFile != "":
		fi, err := os.Stat(o.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		if !fi.Mode().IsRegular() || fi.Size() > maxTokenFile {
			return fmt.Errorf("--token-file %s: not a regular file of at most %d bytes", o.tokenFile, maxTokenFile)
		}
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if o.token = strings.TrimSpace(line); o.token == "" {
			return fmt.Errorf("--token-file %s: the first line is empty", o.tokenFile)
		}
		return nil
	}
	o.token = strings.TrimSpace(env.Getenv(simTokenEnv))
	return nil
}

func runSim(cmd *cobra.Command, env *Env, o *simOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	if err := o.resolveToken(env); err != nil {
		return err
	}
	seeds, spot, err := o.market.config()
	if err != nil {
		return err
	}
	if o.background {
		return runSimBackground(cmd, env, o)
	}
	genToken := o.token == ""
	if genToken {
		var b [24]byte
		rand.Read(b[:])
		o.token = hex.EncodeToString(b[:])
	}
	if o.project == "" {
		o.project = simUUID()
	}
	// Request logs wait until the PACKET_* lines are out: the URL line
	// must be the first line of stdout even if a client is already polling.
	logs := &simLogGate{w: env.Out}
	var booter *packetsim.QEMUBooter
	if o.boot == "qemu" {
		var err error
		// Boot progress is logged even with --quiet: a boot takes seconds.
		booter, err = packetsim.NewQEMUBooter(packetsim.QEMU{Timeout: o.bootTimeout, Dir: o.bootDir}, o.bootConcurrency, logs)
		if err != nil {
			return fmt.Errorf("failed to start simulator: --boot qemu: %w", err)
		}
		defer booter.Close()
	}
	srv, err := packetsim.Start(packetsim.Config{
		Listen: o.listen, Token: o.token, Project: o.project,
		RateLimit: o.rateLimit, Burst: o.burst,
		ProvisionTime: o.provisionTime, DeprovisionTime: o.deprovisionTime,
		FaultRate: o.faultRate, AmbiguousCreateRate: o.ambiguousCreateRate, FailProvisionRate: o.failProvisionRate,
		ListLag: o.listLag, Capacity: o.capacity, ImagesDir: o.images, StateFile: o.state, Seed: o.seed,
		AllowRemoteFetch: o.allowRemoteFetch, Logger: logs, Quiet: o.quiet,
		Booter: booterOrNil(booter), Reservations: seeds, Spot: spot,
	})
	if err != nil {
		return fmt.Errorf("failed to start simulator: %w", err)
	}
	// Bound to every interface, the server's own URL (0.0.0.0) is no
	// address to connect to; this machine's loopback is.
	root := usableURL(srv.URL)
	vars := []simVar{{"PACKET_API_URL", usableURL(srv.APIURL)}}
	if genToken {
		vars = append(vars, simVar{"PACKET_AUTH_TOKEN", o.token})
	}
	vars = append(vars, simVar{"PACKET_PROJECT_ID", srv.Sim.Project()}, simVar{"LKFLEET_SIM_URL", root})
	for _, v := range vars {
		fmt.Fprintf(env.Out, "%s=%s\n", v.name, v.value)
	}
	logs.open()
	if root != srv.URL {
		fmt.Fprintf(env.Err, "listening on every interface (%s); other machines reach it at this machine's address\n", strings.TrimPrefix(srv.URL, "http://"))
	}
	if o.sosListen != "" {
		cfg := packetsim.SOSConfig{Listen: o.sosListen}
		if o.sosHostKey != "" {
			if cfg.HostKey, err = packetsim.LoadOrCreateHostKey(o.sosHostKey); err != nil {
				srv.Close()
				return fmt.Errorf("failed to start simulator: --sos-host-key: %w", err)
			}
		}
		sos, err := srv.Sim.StartSOS(cfg)
		if err != nil {
			srv.Close()
			return fmt.Errorf("failed to start simulator: --sos-listen: %w", err)
		}
		defer sos.Close()
		fmt.Fprintf(env.Err, "serial consoles (SOS): ssh -p %s <device-id>@%s\n", portOf(sos.Addr()), hostOf(sos.Addr()))
	}
	if o.images != "" {
		fmt.Fprintf(env.Err, "serving %s at %s/images/\n", o.images, root)
	}
	if err := reportReady(env, vars); err != nil {
		srv.Close()
		return err
	}
	<-cmd.Context().Done()
	fmt.Fprintln(env.Err, "stopping simulator")
	if err := srv.Close(); err != nil {
		return fmt.Errorf("failed to stop simulator: %w", err)
	}
	return nil
}

func hostOf(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func portOf(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// booterOrNil keeps a nil *QEMUBooter from becoming a non-nil Booter.
func booterOrNil(b *packetsim.QEMUBooter) packetsim.Booter {
	if b == nil {
		return nil
	}
	return b
}

// simUUID returns a random version 4 UUID.
func simUUID() string {
	var u [16]byte
	rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// simLogGate holds log output back until open is called, then passes it
// through.
type simLogGate struct {
	mu     sync.Mutex
	w      io.Writer
	opened bool
	buf    bytes.Buffer
}

func (g *simLogGate) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.opened {
		return g.buf.Write(p)
	}
	return g.w.Write(p)
}

func (g *simLogGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.opened = true
	g.w.Write(g.buf.Bytes())
	g.buf.Reset()
}
