package harness

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lkfleet/lkfleet/pkg/packetsim"
)

// Live is the sampling rule for "a slot holds two live devices": a device
// of the fleet is live while no DELETE of it was accepted (it is not
// deprovisioning) and it is not failed. Queued and provisioning devices
// count: a second device being built for a slot is the duplicate the
// lease exists to prevent. A device being deprovisioned after a
// replacement does not: it is on its way out and the API no longer lets
// anyone use it. A failed device does not either: it serves nothing, the
// duplicate rule never keeps it, and the executor replaces it by creating
// the new device first (so a failed device and its replacement coexist
// by design, never two devices that may both serve).
func Live(d packetsim.DeviceSnapshot) bool {
	return !d.Deleted && d.State != "failed" && d.State != "deprovisioning"
}

// snapTag returns the value of a snapshot's tag key=.
func snapTag(d packetsim.DeviceSnapshot, key string) string {
	for _, t := range d.Tags {
		if v, ok := strings.CutPrefix(t, key+"="); ok {
			return v
		}
	}
	return ""
}

// LiveBySlot groups the live devices of fleet in a snapshot by slot.
func LiveBySlot(devs []packetsim.DeviceSnapshot, fleet string) map[string][]string {
	m := map[string][]string{}
	for _, d := range devs {
		if snapTag(d, "lkfleet:fleet") == fleet && Live(d) {
			slot := snapTag(d, "lkfleet:slot")
			m[slot] = append(m[slot], d.ID+" ("+d.State+")")
		}
	}
	return m
}

// Sampler takes snapshots of a simulator's devices over and over, straight
// from the simulator (no list lag, no rate limit, no faults), and keeps
// the most live devices one slot of a fleet held in any of them.
type Sampler struct {
	fleet      string
	stop, done chan struct{}

	mu      sync.Mutex
	samples int
	most    int
	worst   string
}

// SampleLive starts sampling fleet's slots in the simulator sim returns,
// every interval, until Stop.
func SampleLive(sim func() *packetsim.Sim, fleet string, every time.Duration) *Sampler {
	s := &Sampler{fleet: fleet, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			s.sample(sim())
			select {
			case <-s.stop:
				s.sample(sim()) // the moment Stop was called
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *Sampler) sample(sim *packetsim.Sim) {
	per := LiveBySlot(sim.Devices(), s.fleet)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples++
	for _, slot := range slices.Sorted(maps.Keys(per)) {
		if ids := per[slot]; len(ids) > s.most {
			s.most, s.worst = len(ids), fmt.Sprintf("slot %s: %s", slot, strings.Join(ids, ", "))
		}
	}
}

// Stop ends sampling and returns the most live devices one slot held in
// any sample (0 if the fleet had none), which slot and devices that was,
// and how many samples were taken.
func (s *Sampler) Stop() (most int, worst string, samples int) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.most, s.worst, s.samples
}

// door is a listener of its own onto a lab's simulator: each of several
// concurrent runs gets one, so their requests can be told apart.
type door struct {
	url string
	srv *http.Server

	mu        sync.Mutex
	mutations []string
}

// openDoor serves the lab's API on a new 127.0.0.1 port.
func (l *Lab) openDoor() (*door, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lab: open a door: %w", err)
	}
	d := &door{url: "http://" + ln.Addr().String()}
	d.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			d.mu.Lock()
			d.mutations = append(d.mutations, r.Method+" "+r.URL.Path)
			d.mu.Unlock()
		}
		l.serve(w, r)
	})}
	go d.srv.Serve(ln)
	return d, nil
}

// env is the lab's environment with the API reached through the door.
func (d *door) env(l *Lab) map[string]string {
	env := l.Env()
	env["PACKET_API_URL"] = d.url + "/metal/v1/"
	return env
}

// deviceChanges returns the mutating requests through the door that
// addressed devices (the lease's writes go to the project).
func (d *door) deviceChanges() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, m := range d.mutations {
		if strings.Contains(m, "/devices") {
			out = append(out, m)
		}
	}
	return out
}

func (d *door) close() { d.srv.Close() }
