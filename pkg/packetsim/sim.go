// Package packetsim is a stateful, in-memory Packet (Equinix Metal) API:
// an http.Handler that real clients cannot tell from the service on the
// routes lkfleet uses. Devices go through the service's lifecycle, boot
// their iPXE scripts, and post user state events; faults, list lag,
// capacity limits and rate limits are simulated on demand.
//
// The package uses the standard library, and golang.org/x/crypto/ssh for
// its SOS server (sos.go). State is computed lazily from
// timestamps on read, and one scheduler goroutine (a timer heap) drives
// boots and purges, so the simulator holds 100,000 devices in little memory
// and is never the bottleneck of the client it tests.
package packetsim

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a simulator. The zero value is usable: any non-empty
// token is accepted, the project id is generated, there is no rate limit,
// devices become active at once and no faults are injected.
type Config struct {
	// Listen is the address Start listens on ("" = 127.0.0.1:0).
	Listen string
	// Token is the only accepted X-Auth-Token ("" = any non-empty token).
	Token string
	// Project is the id of the one project ("" = generated from Seed).
	Project string
	// RateLimit is the sustained requests per second allowed per token
	// (0 = unlimited); Burst is the token bucket size (0 = max(1, RateLimit)).
	RateLimit float64
	Burst     int
	// ProvisionTime is how long a new device takes from queued to active;
	// DeprovisionTime how long a deleted device lingers as deprovisioning.
	ProvisionTime   time.Duration
	DeprovisionTime time.Duration
	// FaultRate is the probability that an API request is answered with a
	// 500/502/503, a dropped connection, or (GET only) a truncated body.
	FaultRate float64
	// AmbiguousCreateRate is the probability that a create makes the device
	// and then fails the response (5xx or dropped connection).
	AmbiguousCreateRate float64
	// FailProvisionRate is the probability that a new device ends in
	// state failed instead of active (it never boots).
	FailProvisionRate float64
	// ListLag hides devices younger than this from listings (not from GET).
	ListLag time.Duration
	// Capacity is the number of live devices each facility holds per plan
	// (0 = DefaultCapacity).
	Capacity int
	// ImagesDir, if set, is served at /images/ (GET, HEAD, ranges).
	ImagesDir string
	// StateFile, if set, is loaded by New and rewritten atomically shortly
	// after every change and on Close.
	StateFile string
	// Seed makes ids and fault decisions reproducible (0 is a valid seed).
	Seed uint64
	// AllowRemoteFetch lets boots fetch non-loopback URLs.
	AllowRemoteFetch bool
	// Logger receives one line per API request unless Quiet.
	Logger io.Writer
	Quiet  bool
	// HTTPClient fetches iPXE scripts and HEADs boot artifacts
	// (nil = a client with a 10 s timeout).
	HTTPClient *http.Client
	// SaveDelay debounces state file writes (0 = 200 ms).
	SaveDelay time.Duration
	// ReadTimeout bounds reading one request, body included, on Start's
	// listener (0 = 30 s): a client that sends its body slowly, or not
	// at all, loses the connection instead of holding it forever.
	ReadTimeout time.Duration
	// BootWorkers bounds concurrent boots (0 = 8).
	BootWorkers int
	// Booter, if set, boots every script that interpreted well for real
	// (e.g. a QEMUBooter); the user state then reports its result.
	Booter Booter
	// Reservations seeds the project's hardware reservations.
	Reservations []ReservationSeed
	// Spot configures the spot market's prices and notices.
	Spot SpotConfig
}

// DefaultCapacity is the per facility and plan capacity when Config.Capacity
// is 0: plenty for any test.
const DefaultCapacity = 1 << 30

// Sim is the simulator. It implements http.Handler for /metal/v1/...,
// /images/, /sim/stats and /sim/boots. Call Close when done: it stops the
// scheduler and writes the state file.
type Sim struct {
	cfg     Config
	project string
	cat     *catalogue
	images  http.Handler
	client  *http.Client

	mu      sync.RWMutex
	devs    map[uuid]*device
	order   []*device // creation order; purged devices are compacted out
	holes   int       // purged entries still in order
	seq     uint32
	boots   []Boot
	capUsed map[capKey]int
	vnets   vnetStore // virtual networks (vlans.go)
	proj    projectMeta
	keys    []*sshKey // copy-on-write
	hw      *hardware // reservations and spot market

	projRefOnce sync.Once
	projRef     json.RawMessage

	rngMu sync.Mutex
	pcg   *rand.PCG // the source of rng, saved in the state file
	rng   *rand.Rand

	limiter *limiter
	stats   stats
	logMu   sync.Mutex

	sched *scheduler
	saver *saver

	consoles consoleSet // serial consoles (console.go)

	inFlight atomic.Int64
	closed   atomic.Bool
}

// New builds a simulator from cfg. It loads cfg.StateFile if it exists; a
// state file that cannot be read is reported by Start (New keeps going with
// an empty state and logs the problem).
func New(cfg Config) *Sim {
	s, err := newSim(cfg)
	if err != nil && cfg.Logger != nil {
		s.logf("packetsim: %v", err)
	}
	return s
}

func newSim(cfg Config) (*Sim, error) {
	if cfg.Capacity <= 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.RateLimit > 0 && cfg.Burst <= 0 {
		cfg.Burst = max(1, int(cfg.RateLimit))
	}
	if cfg.SaveDelay <= 0 {
		cfg.SaveDelay = 200 * time.Millisecond
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 30 * time.Second
	}
	if cfg.BootWorkers <= 0 {
		cfg.BootWorkers = 8
	}
	s := &Sim{
		cfg:     cfg,
		cat:     defaultCatalogue(),
		devs:    make(map[uuid]*device),
		capUsed: make(map[capKey]int),
		pcg:     rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15),
		limiter: newLimiter(cfg.RateLimit, cfg.Burst),
		proj:    projectMeta{name: "lkfleet simulator", updated: projectCreated},
	}
	s.rng = rand.New(s.pcg)
	s.client = cfg.HTTPClient
	if s.client == nil {
		s.client = &http.Client{Timeout: 10 * time.Second}
	}
	s.project = strings.ToLower(cfg.Project)
	if s.project == "" {
		s.project = s.newID().String()
	}
	if cfg.ImagesDir != "" {
		s.images = http.StripPrefix("/images/", http.FileServer(http.Dir(cfg.ImagesDir)))
	}
	s.stats.init()
	s.sched = newScheduler(s)
	var err error
	s.hw, err = newHardware(s)
	s.startMarket(s.now())
	if err == nil && cfg.StateFile != "" {
		err = checkWritable(cfg.StateFile)
		if err == nil {
			err = s.loadState()
		}
		s.saver = newSaver(s)
	}
	return s, err
}

// Project returns the id of the simulated project.
func (s *Sim) Project() string { return s.project }

// Token returns the accepted token ("" = any non-empty token).
func (s *Sim) Token() string { return s.cfg.Token }

// Close stops the scheduler and the boot workers and writes the state
// file. The handler keeps answering requests but boots no longer run.
func (s *Sim) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.sched.stop()
	if s.saver != nil {
		return s.saver.close()
	}
	return nil
}

// now is the simulator's clock; all lifecycle state derives from it.
func (s *Sim) now() time.Time { return time.Now() }

// chance draws one reproducible decision with probability p.
func (s *Sim) chance(p float64) bool {
	if p <= 0 {
		return false
	}
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.Float64() < p
}

// pick draws a reproducible integer in [0, n).
func (s *Sim) pick(n int) int {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.IntN(n)
}

// newID draws a reproducible version 4 UUID.
func (s *Sim) newID() uuid {
	s.rngMu.Lock()
	a, b := s.rng.Uint64(), s.rng.Uint64()
	s.rngMu.Unlock()
	var u uuid
	for i := range 8 {
		u[i] = byte(a >> (8 * i))
		u[8+i] = byte(b >> (8 * i))
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// freshID draws a device id no device holds; the caller holds s.mu. The
// random source continues across restarts (it is saved in the state
// file), so this only guards state files from before that.
func (s *Sim) freshID() uuid {
	for {
		if id := s.newID(); s.devs[id] == nil {
			return id
		}
	}
}

func (s *Sim) logf(format string, args ...any) {
	if s.cfg.Logger == nil || s.cfg.Quiet {
		return
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	line := sprintf(format, args...)
	if !strings.HasSuffix(line, "\n") {
		line += "\n"
	}
	io.WriteString(s.cfg.Logger, line)
}
