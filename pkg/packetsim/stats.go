package packetsim

import (
	"maps"
	"strings"
	"sync"
)

// Stats is the document served at GET /sim/stats.
type Stats struct {
	// Requests counts API requests per "METHOD /route/{id}".
	Requests map[string]int `json:"requests"`
	// Status counts API responses per status code ("dropped" for
	// connections closed on purpose).
	Status map[string]int `json:"status"`
	// Throttled counts 429 answers.
	Throttled int `json:"throttled"`
	// Creates counts devices created (batches and ambiguous creates too).
	Creates int `json:"creates"`
	// Duplicates counts extra live devices sharing one lkfleet:slot= tag
	// within one lkfleet:fleet= tag.
	Duplicates int `json:"duplicates"`
	// PeakInFlight is the most API requests served at once.
	PeakInFlight int `json:"peak_in_flight"`
	// Faults counts injected faults by kind: "500", "502", "503",
	// "dropped" and "truncated" (--fault-rate), "ambiguous_create"
	// (--ambiguous-create-rate) and "failed_provision"
	// (--fail-provision-rate). Chaos runs report them, so a run that
	// passed can be told from one where no fault happened.
	Faults map[string]int `json:"faults"`
}

// Fault kinds counted in Stats.Faults.
const (
	FaultServerError     = "500"
	FaultBadGateway      = "502"
	FaultUnavailable     = "503"
	FaultDropped         = "dropped"
	FaultTruncated       = "truncated"
	FaultAmbiguousCreate = "ambiguous_create"
	FaultFailedProvision = "failed_provision"
)

// stats accumulates counters under its own lock.
type stats struct {
	mu        sync.Mutex
	requests  map[string]int
	status    map[string]int
	throttled int
	creates   int
	peak      int64
	faults    map[string]int
}

func (st *stats) init() {
	st.requests = map[string]int{}
	st.status = map[string]int{}
	st.faults = map[string]int{}
}

// fault counts one injected fault of kind.
func (st *stats) fault(kind string) {
	st.mu.Lock()
	st.faults[kind]++
	st.mu.Unlock()
}

func (st *stats) enter(n int64) {
	st.mu.Lock()
	st.peak = max(st.peak, n)
	st.mu.Unlock()
}

func (st *stats) record(route, status string) {
	st.mu.Lock()
	st.requests[route]++
	st.status[status]++
	st.mu.Unlock()
}

func (st *stats) throttle() {
	st.mu.Lock()
	st.throttled++
	st.mu.Unlock()
}

func (st *stats) created(n int) {
	st.mu.Lock()
	st.creates += n
	st.mu.Unlock()
}

// Stats returns a snapshot of the counters.
func (s *Sim) Stats() Stats {
	s.stats.mu.Lock()
	out := Stats{
		Requests: maps.Clone(s.stats.requests), Status: maps.Clone(s.stats.status),
		Throttled: s.stats.throttled, Creates: s.stats.creates, PeakInFlight: int(s.stats.peak),
		Faults: maps.Clone(s.stats.faults),
	}
	s.stats.mu.Unlock()
	out.Duplicates = s.duplicates()
	return out
}

// duplicates counts extra live devices per (fleet, slot) tag pair.
func (s *Sim) duplicates() int {
	now := s.now()
	seen := map[string]int{}
	dups := 0
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, d := range s.order {
		if !d.deletedAt.IsZero() || d.goneAt(now, s.cfg.DeprovisionTime) {
			continue
		}
		var fleet, slot string
		for _, t := range d.tags {
			if v, ok := strings.CutPrefix(t, "lkfleet:fleet="); ok {
				fleet = v
			} else if v, ok := strings.CutPrefix(t, "lkfleet:slot="); ok {
				slot = v
			}
		}
		if fleet == "" || slot == "" {
			continue
		}
		k := fleet + "\x00" + slot
		if seen[k] > 0 {
			dups++
		}
		seen[k]++
	}
	return dups
}
