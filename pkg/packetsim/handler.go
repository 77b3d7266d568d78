package packetsim

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// apiPrefix is where the API is served, as on the service.
const apiPrefix = "/metal/v1/"

// ServeHTTP serves the API under /metal/v1/, the artifact directory under
// /images/ and the test hooks /sim/stats and /sim/boots.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, apiPrefix):
		s.serveAPI(w, r)
	case strings.HasPrefix(p, metadataPrefix):
		s.serveMetadataPath(w, r)
	case p == "/sim/stats" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Stats())
	case p == "/sim/boots" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Boots())
	case strings.HasPrefix(p, "/images/") && s.images != nil:
		s.images.ServeHTTP(w, r)
	default:
		writeErr(w, http.StatusNotFound, "Not found")
	}
}

// statusWriter remembers the status of a response for stats and logs.
// It reports the status before any of the response leaves, so a client
// that reads /sim/stats after an answer always finds it counted.
type statusWriter struct {
	http.ResponseWriter
	status   int
	onStatus func(int)
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.onStatus(code)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// apiHandler serves one route; id is the path's {id} ("" if none).
type apiHandler func(w http.ResponseWriter, r *http.Request, id string)

// route maps a request to its stats name ("GET /projects/{id}/devices")
// and handler. A nil handler with a known name means wrong method. Empty
// path segments are ignored: clients that join a base URL ending in a
// slash with a path starting with one send /metal/v1//devices/..., which
// the service answers.
func (s *Sim) route(r *http.Request) (string, string, apiHandler) {
	parts := slices.DeleteFunc(strings.Split(strings.TrimPrefix(r.URL.Path, apiPrefix), "/"), func(p string) bool { return p == "" })
	rest := strings.Join(parts, "/")
	m := r.Method
	var tmpl, id string
	var h map[string]apiHandler
	if tmpl, id, h := s.routeNetwork(parts); h != nil {
		return m + " " + tmpl, id, h[m]
	}
	switch {
	case rest == "projects":
		tmpl, h = "/projects", map[string]apiHandler{"GET": s.listProjects}
	case len(parts) == 2 && parts[0] == "projects":
		tmpl, id, h = "/projects/{id}", parts[1], map[string]apiHandler{"GET": s.getProject, "PUT": s.updateProject, "PATCH": s.updateProject}
	case len(parts) == 3 && parts[0] == "projects" && parts[2] == "ssh-keys":
		tmpl, id, h = "/projects/{id}/ssh-keys", parts[1], map[string]apiHandler{"GET": s.listSSHKeys, "POST": s.createSSHKey}
	case len(parts) == 3 && parts[0] == "projects" && parts[2] == "devices":
		tmpl, id, h = "/projects/{id}/devices", parts[1], map[string]apiHandler{"GET": s.listDevices, "POST": s.createDevice}
	case len(parts) == 4 && parts[0] == "projects" && parts[2] == "devices" && parts[3] == "batch":
		tmpl, id, h = "/projects/{id}/devices/batch", parts[1], map[string]apiHandler{"POST": s.createBatch}
	case len(parts) == 2 && parts[0] == "devices":
		tmpl, id, h = "/devices/{id}", parts[1], map[string]apiHandler{"GET": s.getDevice, "PUT": s.updateDevice, "DELETE": s.deleteDevice}
	case len(parts) == 3 && parts[0] == "devices" && parts[2] == "actions":
		tmpl, id, h = "/devices/{id}/actions", parts[1], map[string]apiHandler{"POST": s.deviceAction}
	case len(parts) == 3 && parts[0] == "devices" && parts[2] == "events":
		tmpl, id, h = "/devices/{id}/events", parts[1], map[string]apiHandler{"GET": s.deviceEvents}
	case len(parts) == 3 && parts[0] == "devices" && parts[2] == "metadata":
		tmpl, id, h = "/devices/{id}/metadata", parts[1], map[string]apiHandler{"GET": s.deviceMetadata}
	case len(parts) == 3 && parts[0] == "devices" && parts[2] == "userdata":
		tmpl, id, h = "/devices/{id}/userdata", parts[1], map[string]apiHandler{"GET": s.deviceUserdata}
	case len(parts) == 3 && parts[0] == "devices" && parts[2] == "ips":
		tmpl, id, h = "/devices/{id}/ips", parts[1], map[string]apiHandler{"GET": s.deviceIPs}
	case rest == "operating-systems":
		tmpl, h = "/operating-systems", map[string]apiHandler{"GET": s.listOperatingSystems}
	case rest == "facilities":
		tmpl, h = "/facilities", map[string]apiHandler{"GET": s.listFacilities}
	case rest == "locations/metros":
		tmpl, h = "/locations/metros", map[string]apiHandler{"GET": s.listMetros}
	case rest == "plans":
		tmpl, h = "/plans", map[string]apiHandler{"GET": s.listPlans}
	case rest == "capacity":
		tmpl, h = "/capacity", map[string]apiHandler{"GET": s.getCapacity(false), "POST": s.checkCapacity(false)}
	case rest == "capacity/metros":
		tmpl, h = "/capacity/metros", map[string]apiHandler{"GET": s.getCapacity(true), "POST": s.checkCapacity(true)}
	default:
		if tmpl, id, h = s.reservationRoutes(parts); tmpl == "" {
			return m + " (unknown)", "", nil
		}
	}
	return m + " " + tmpl, id, h[m]
}

// serveAPI wraps every API call: in-flight accounting, authentication,
// rate limiting, fault injection, stats and the request log.
func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	s.stats.enter(s.inFlight.Add(1))
	defer s.inFlight.Add(-1)
	name, id, h := s.route(r)
	sw := &statusWriter{ResponseWriter: w, onStatus: func(code int) { s.stats.record(name, strconv.Itoa(code)) }}
	defer func() {
		if rec := recover(); rec != nil {
			// Dropped or truncated on purpose (fault injection).
			if sw.status == 0 {
				s.stats.record(name, "dropped")
			}
			s.logf("%s %s %s dropped %s", start.Format("15:04:05.000"), r.Method, r.URL.RequestURI(), time.Since(start).Round(time.Microsecond))
			panic(rec)
		}
		st := sw.status
		if st == 0 {
			sw.WriteHeader(http.StatusOK)
			st = http.StatusOK
		}
		s.logf("%s %s %s %d %s", start.Format("15:04:05.000"), r.Method, r.URL.RequestURI(), st, time.Since(start).Round(time.Microsecond))
	}()

	tok := r.Header.Get("X-Auth-Token")
	if tok == "" || (s.cfg.Token != "" && tok != s.cfg.Token) {
		s.limiter.headers(sw.Header(), "", start)
		writeErr(sw, http.StatusUnauthorized, "Invalid authentication token")
		return
	}
	if ok, retry := s.limiter.take(sw.Header(), tok, start); !ok {
		s.stats.throttle()
		sw.Header().Set("Retry-After", strconv.Itoa(retry))
		writeErr(sw, http.StatusTooManyRequests, "Rate limit exceeded: too many requests, retry later")
		return
	}
	if h == nil {
		if strings.HasSuffix(name, "(unknown)") {
			writeErr(sw, http.StatusNotFound, "Not found")
		} else {
			writeErr(sw, http.StatusMethodNotAllowed, "Method not allowed")
		}
		return
	}
	if s.chance(s.cfg.FaultRate) {
		s.fault(sw, r, func(w http.ResponseWriter) { h(w, r, id) })
		return
	}
	h(sw, r, id)
}

// Fault kinds drawn by fault.
const (
	fault500 = iota
	fault502
	fault503
	faultDrop
	faultTruncate // GET only: the response is computed and cut short
)

// fault answers with a server error, drops the connection or (GET only)
// truncates the body. Only truncation runs the handler: the others have no
// side effects, so a client may retry any of them safely.
func (s *Sim) fault(w http.ResponseWriter, r *http.Request, serve func(http.ResponseWriter)) {
	n := faultDrop + 1
	if r.Method == http.MethodGet {
		n = faultTruncate + 1
	}
	switch s.pick(n) {
	case fault500:
		s.stats.fault(FaultServerError)
		writeErr(w, http.StatusInternalServerError, "Oh snap, something went wrong! We've logged the error and will take a look - please reach out to us if you continue having trouble.")
	case fault502:
		s.stats.fault(FaultBadGateway)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html><body><h1>502 Bad Gateway</h1></body></html>\n"))
	case fault503:
		s.stats.fault(FaultUnavailable)
		writeErr(w, http.StatusServiceUnavailable, "Service temporarily unavailable")
	case faultDrop:
		s.stats.fault(FaultDropped)
		dropConn(w)
	case faultTruncate:
		s.stats.fault(FaultTruncated)
		buf := &bufferWriter{header: http.Header{}}
		serve(buf)
		for k, v := range buf.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(buf.body)))
		w.WriteHeader(buf.status)
		w.Write(buf.body[:len(buf.body)/2])
		http.NewResponseController(w).Flush()
		dropConn(w)
	}
}

// dropConn closes the client connection without (more of) a response.
func dropConn(w http.ResponseWriter) {
	if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
		conn.Close()
	}
	// Without a hijackable connection (or after hijacking) abort the
	// handler: net/http closes the connection and logs nothing.
	panic(http.ErrAbortHandler)
}

// bufferWriter captures a response so it can be sent truncated.
type bufferWriter struct {
	header http.Header
	status int
	body   []byte
}

func (b *bufferWriter) Header() http.Header { return b.header }
func (b *bufferWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	b.body = append(b.body, p...)
	return len(p), nil
}
