package main

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// reqEvent is one API request the measured process sent: when it arrived
// (from the process start), its route and the status it got.
type reqEvent struct {
	At     time.Duration
	Route  string
	Status int
}

// recorder sits in front of the simulator and timestamps every API
// request while a measured run is going on, so a run can be split into
// planning, calls and waiting without trusting the client's own account.
type recorder struct {
	next http.Handler

	mu     sync.Mutex
	on     bool
	start  time.Time
	events []reqEvent
}

func (rc *recorder) begin(start time.Time) {
	rc.mu.Lock()
	rc.on, rc.start, rc.events = true, start, nil
	rc.mu.Unlock()
}

func (rc *recorder) end() []reqEvent {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.on = false
	return rc.events
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, "/metal/v1/") {
		rc.next.ServeHTTP(w, r)
		return
	}
	at := time.Now()
	sw := &codeWriter{ResponseWriter: w, code: http.StatusOK}
	rc.next.ServeHTTP(sw, r)
	rc.mu.Lock()
	if rc.on {
		rc.events = append(rc.events, reqEvent{At: at.Sub(rc.start), Route: routeOf(r), Status: sw.code})
	}
	rc.mu.Unlock()
}

// codeWriter remembers the status code of a response.
type codeWriter struct {
	http.ResponseWriter
	code int
}

func (w *codeWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// routeOf names a request the way the simulator's stats do.
func routeOf(r *http.Request) string {
	parts := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/metal/v1/"), "/"), "/")
	for i := range parts {
		if i > 0 && (parts[i-1] == "projects" || parts[i-1] == "devices") {
			parts[i] = "{id}"
		}
	}
	return r.Method + " /" + strings.Join(parts, "/")
}

// phases summarises a timeline: when the first and last mutating call
// arrived and how many listings came after the first one.
type phases struct {
	FirstCallS     float64 `json:"first_call_s"`
	LastCallS      float64 `json:"last_call_s"`
	LastListingS   float64 `json:"last_listing_s"`
	ListingsAfter  int     `json:"listings_after_first_call"`
	ListingsDuring int     `json:"listings_between_first_and_last_call"`
	// FirstListingS is the first listing after the first call; MinGapS the
	// shortest time between two of those listings.
	FirstListingS float64 `json:"first_listing_s"`
	MinGapS       float64 `json:"min_listing_gap_s"`
}

func phasesOf(tl []reqEvent) phases {
	var p phases
	first, last := time.Duration(-1), time.Duration(0)
	for _, e := range tl {
		if mutating(e.Route) {
			if first < 0 {
				first = e.At
			}
			last = e.At
		}
	}
	if first < 0 {
		return p
	}
	p.FirstCallS, p.LastCallS = first.Seconds(), last.Seconds()
	prev := time.Duration(-1)
	for _, e := range tl {
		if e.Route == routeList && e.At > first {
			p.ListingsAfter++
			if prev < 0 {
				p.FirstListingS = e.At.Seconds()
			} else if gap := (e.At - prev).Seconds(); p.MinGapS == 0 || gap < p.MinGapS {
				p.MinGapS = gap
			}
			prev = e.At
			p.LastListingS = e.At.Seconds()
			if e.At < last {
				p.ListingsDuring++
			}
		}
	}
	return p
}

func mutating(route string) bool {
	return route == routeCreate || route == routePut || route == routeAction || strings.HasPrefix(route, "DELETE ")
}
