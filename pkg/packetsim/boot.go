package packetsim

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Boot is the record of one simulated boot (GET /sim/boots).
type Boot struct {
	DeviceID string    `json:"device_id"`
	Hostname string    `json:"hostname"`
	Time     time.Time `json:"time"`
	// Source is where the script came from: "userdata", the
	// ipxe_script_url, or "local-disk" for a non-PXE reboot.
	Source     string   `json:"source"`
	KernelURL  string   `json:"kernel_url,omitempty"`
	Args       string   `json:"args,omitempty"`
	InitrdURLs []string `json:"initrd_urls,omitempty"`
	OK         bool     `json:"ok"`
	Error      string   `json:"error,omitempty"`

	script   string // the script that booted (after chains), for a Booter and the console
	detail   string // a Booter's success text for the succeeded user state
	reported bool   // the guest posted its own user state (metadata service)
}

// Boots returns every boot recorded so far, oldest first.
func (s *Sim) Boots() []Boot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Boot, len(s.boots))
	copy(out, s.boots)
	return out
}

type jobKind uint8

const (
	jobBoot jobKind = iota
	jobPurge
	jobSpotStep  // market.go: move spot prices
	jobTerminate // market.go: an outbid device's termination_time came
)

// job is one scheduled piece of work on a device.
type job struct {
	at   time.Time
	dev  uuid
	gen  uint32
	kind jobKind
}

type jobHeap []job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h jobHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)        { *h = append(*h, x.(job)) }
func (h *jobHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// scheduler runs jobs at their time from one goroutine and hands boots to a
// small worker pool. It starts on first use so a Sim that never schedules
// anything owns no goroutines.
type scheduler struct {
	s       *Sim
	mu      sync.Mutex
	h       jobHeap
	started bool
	stopped bool
	wake    chan struct{}
	work    chan job
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func newScheduler(s *Sim) *scheduler {
	ctx, cancel := context.WithCancel(context.Background())
	return &scheduler{s: s, wake: make(chan struct{}, 1), work: make(chan job), ctx: ctx, cancel: cancel}
}

// add schedules j. Safe to call with s.mu held (it takes only sc.mu).
func (sc *scheduler) add(j job) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.stopped {
		return
	}
	if !sc.started {
		sc.started = true
		sc.wg.Add(1 + sc.s.cfg.BootWorkers)
		go sc.loop()
		for range sc.s.cfg.BootWorkers {
			go sc.worker()
		}
	}
	heap.Push(&sc.h, j)
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

func (sc *scheduler) stop() {
	sc.mu.Lock()
	sc.stopped = true
	sc.mu.Unlock()
	sc.cancel()
	sc.wg.Wait()
}

func (sc *scheduler) loop() {
	defer sc.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		var due []job
		wait := time.Hour
		sc.mu.Lock()
		for len(sc.h) > 0 && !sc.h[0].at.After(now) {
			due = append(due, heap.Pop(&sc.h).(job))
		}
		if len(sc.h) > 0 {
			wait = sc.h[0].at.Sub(now)
		}
		sc.mu.Unlock()
		for _, j := range due {
			if sc.s.runMarketJob(j, now) {
				continue
			}
			if j.kind == jobPurge {
				sc.s.purge(j.dev, now)
				continue
			}
			select {
			case sc.work <- j:
			case <-sc.ctx.Done():
				return
			}
		}
		if len(due) > 0 {
			continue // time moved while dispatching
		}
		timer.Reset(wait)
		select {
		case <-timer.C:
		case <-sc.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-sc.ctx.Done():
			return
		}
	}
}

func (sc *scheduler) worker() {
	defer sc.wg.Done()
	for {
		select {
		case j := <-sc.work:
			sc.s.runBootJob(sc.ctx, j)
		case <-sc.ctx.Done():
			return
		}
	}
}

// scheduleBoot arranges for d to boot at t; the caller holds s.mu and has
// bumped d.gen if an earlier boot must be cancelled.
func (s *Sim) scheduleBoot(d *device, t time.Time, local bool) {
	d.bootAt, d.bootLocal = t, local
	s.sched.add(job{at: t, dev: d.id, gen: d.gen, kind: jobBoot})
}

// purge forgets a device whose deprovisioning has finished.
func (s *Sim) purge(id uuid, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.devs[id]
	if d == nil || !d.goneAt(now, s.cfg.DeprovisionTime) {
		return
	}
	d.gone = true
	delete(s.devs, id)
	delete(s.hw.spot, id)
	s.consoles.remove(id)
	s.holes++
	if s.holes > 64 && s.holes > len(s.order)/4 {
		kept := s.order[:0]
		for _, x := range s.order {
			if !x.gone {
				kept = append(kept, x)
			}
		}
		clear(s.order[len(kept):])
		s.order, s.holes = kept, 0
	}
	s.markDirty()
}

// bootSnap is what a boot needs, copied out under the lock.
type bootSnap struct {
	id        uuid
	gen       uint32
	hostname  string
	userdata  string
	ipxeURL   string
	localDisk bool
	arch      string
}

func (s *Sim) runBootJob(ctx context.Context, j job) {
	s.mu.RLock()
	d := s.devs[j.dev]
	if d == nil || d.gen != j.gen || !d.deletedAt.IsZero() || d.bootAt.IsZero() {
		s.mu.RUnlock()
		return
	}
	snap := bootSnap{id: d.id, gen: d.gen, hostname: d.hostname, userdata: d.userdata, ipxeURL: d.ipxeURL, localDisk: d.bootLocal}
	if d.plan != nil {
		snap.arch = d.plan.Arch
	}
	s.mu.RUnlock()

	started := s.now()
	b := s.boot(ctx, snap)
	s.consoleInterpreted(snap, b)
	if b.OK && s.cfg.Booter != nil {
		b = s.realBoot(ctx, snap, b)
		s.consoleResult(snap.id, b)
	}
	b.script = ""
	if ctx.Err() != nil {
		return // shutting down: the boot did not finish
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d = s.devs[j.dev]
	if d == nil || d.gen != j.gen || !d.deletedAt.IsZero() {
		return // the device changed while booting; that boot never finished
	}
	d.bootAt = time.Time{}
	s.boots = append(s.boots, b)
	s.markDirty()
	if b.reported || postedFinalState(d, started) {
		// The guest posted its own final user state through its metadata
		// service (a Booter saw it, or it came through the main
		// listener's /metadata/{id}/ during an interpreted boot): it is
		// already among the events and has the last word.
		return
	}
	// The boot reports the way a device does: a user state through the
	// metadata service's recording path.
	u := userState{State: UserStateSucceeded, Code: UserCodeBooted, Message: "booted " + b.KernelURL}
	switch {
	case !b.OK:
		u = userState{State: UserStateFailed, Code: UserCodeBootFailed, Message: b.Error}
	case b.detail != "":
		u.Message = b.detail
	}
	s.recordUserState(d, u, s.now())
}

// postedFinalState reports whether d posted a final user state (succeeded or
// failed) through its metadata service since the boot started at t.
func postedFinalState(d *device, t time.Time) bool {
	for _, e := range d.events {
		if strings.HasPrefix(e.typ, "user.") && e.state != UserStateRunning && !e.at.Before(t) {
			return true
		}
	}
	return false
}

// boot fetches and interprets the device's script and checks its artifacts.
func (s *Sim) boot(ctx context.Context, d bootSnap) Boot {
	b := Boot{DeviceID: d.id.String(), Hostname: d.hostname, Time: s.now()}
	fail := func(format string, args ...any) Boot {
		b.Error = fmt.Sprintf(format, args...)
		return b
	}
	if d.localDisk {
		b.Source = "local-disk"
		return fail("no bootable device: the local disk is empty and always_pxe is false, so the reboot did not PXE boot")
	}
	var script string
	switch {
	case isIPXE(d.userdata):
		b.Source, script = "userdata", d.userdata
	case d.ipxeURL != "":
		b.Source = d.ipxeURL
		body, err := s.fetch(ctx, d.ipxeURL, maxBody)
		if err != nil {
			return fail("fetch iPXE script: %v", err)
		}
		script = string(body)
	default:
		return fail("no iPXE script: userdata does not start with #!ipxe and ipxe_script_url is empty")
	}
	var spec *BootSpec
	for depth := 0; ; depth++ {
		var err error
		b.script = script
		if spec, err = Interpret(script); err != nil {
			return fail("iPXE script: %v", err)
		}
		if spec.Kernel != "" {
			break
		}
		if depth == 4 {
			return fail("iPXE script: chain nested too deeply at %s", spec.Chain)
		}
		// chain loads either another script or a kernel image.
		head, err := s.fetch(ctx, spec.Chain, 6)
		if err != nil {
			return fail("chain: %v", err)
		}
		if string(head) != "#!ipxe" {
			spec.Kernel = spec.Chain
			break
		}
		body, err := s.fetch(ctx, spec.Chain, maxBody)
		if err != nil {
			return fail("chain: %v", err)
		}
		script = string(body)
	}
	b.KernelURL, b.Args = spec.Kernel, spec.Args
	for _, in := range spec.Initrds {
		b.InitrdURLs = append(b.InitrdURLs, in.URL)
	}
	if err := s.head(ctx, spec.Kernel); err != nil {
		return fail("kernel: %v", err)
	}
	for _, in := range spec.Initrds {
		if err := s.head(ctx, in.URL); err != nil {
			return fail("initrd: %v", err)
		}
	}
	b.OK = true
	return b
}

// checkURL enforces http(s) and, unless allowed, loopback hosts only.
func (s *Sim) checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("invalid URL %q: %v", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("invalid URL %q: want http or https", raw)
	}
	if s.cfg.AllowRemoteFetch {
		return nil
	}
	host := u.Hostname()
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing to fetch %s: only loopback URLs are fetched (allow others with --allow-remote-fetch)", raw)
}

// fetch GETs up to limit bytes of raw.
func (s *Sim) fetch(ctx context.Context, raw string, limit int64) ([]byte, error) {
	if err := s.checkURL(raw); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", raw, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", raw, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("GET %s: HTTP %d", raw, resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v", raw, err)
	}
	return b, nil
}

// head checks that an artifact exists.
func (s *Sim) head(ctx context.Context, raw string) error {
	if err := s.checkURL(raw); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, raw, nil)
	if err != nil {
		return fmt.Errorf("HEAD %s: %v", raw, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("HEAD %s: %v", raw, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("HEAD %s: HTTP %d", raw, resp.StatusCode)
	}
	return nil
}
