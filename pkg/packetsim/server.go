package packetsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Server is a simulator listening on a TCP address.
type Server struct {
	// URL is the server's root, e.g. http://127.0.0.1:PORT.
	URL string
	// APIURL is URL + "/metal/v1/", what clients take as their base URL.
	APIURL string
	// Sim is the simulator behind the server.
	Sim *Sim

	srv  *http.Server
	done chan error

	// stopOnce makes Shutdown and Close safe to call more than once (a
	// second call would wait for a second end of Serve forever).
	stopOnce sync.Once
	stopErr  error

	mu    sync.Mutex
	fresh map[net.Conn]bool // connections that have not sent a request yet
}

// track records which connections are still new (see Shutdown).
func (sv *Server) track(c net.Conn, st http.ConnState) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if st == http.StateNew {
		sv.fresh[c] = true
	} else {
		delete(sv.fresh, c)
	}
}

// Start builds a simulator and serves it on cfg.Listen (default
// 127.0.0.1:0). It fails if the state file cannot be loaded or the address
// cannot be bound.
func Start(cfg Config) (*Server, error) {
	s, err := newSim(cfg)
	if err != nil {
		s.Close()
		return nil, err
	}
	addr := cfg.Listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("start simulator: listen on %s: %w", addr, err)
	}
	sv := &Server{
		URL: "http://" + ln.Addr().String(),
		Sim: s,
		srv: &http.Server{
			Handler:           s,
			ReadHeaderTimeout: min(10*time.Second, s.cfg.ReadTimeout),
			ReadTimeout:       s.cfg.ReadTimeout,
			IdleTimeout:       2 * time.Minute,
		},
		done:  make(chan error, 1),
		fresh: map[net.Conn]bool{},
	}
	sv.srv.ConnState = sv.track
	sv.APIURL = sv.URL + apiPrefix
	go func() { sv.done <- sv.srv.Serve(ln) }()
	return sv, nil
}

// Shutdown stops accepting requests, waits for those in flight until ctx
// ends, then closes the simulator (writing its state file). Later calls
// return the first call's result.
func (sv *Server) Shutdown(ctx context.Context) error {
	sv.stopOnce.Do(func() { sv.stopErr = sv.shutdown(ctx) })
	return sv.stopErr
}

func (sv *Server) shutdown(ctx context.Context) error {
	// A client may hold connections it dialled but never sent a request on
	// (Go's transport keeps a spare dial as an idle connection). The
	// server counts such a connection as busy for its first five seconds,
	// so close those first or Shutdown waits that long for nothing.
	sv.srv.SetKeepAlivesEnabled(false)
	sv.mu.Lock()
	for c := range sv.fresh {
		c.Close()
	}
	sv.mu.Unlock()
	err := sv.srv.Shutdown(ctx)
	if serr := <-sv.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if cerr := sv.Sim.Close(); err == nil {
		err = cerr
	}
	return err
}

// Close shuts the server down, giving requests in flight five seconds.
func (sv *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return sv.Shutdown(ctx)
}
