// Package packet is lkfleet's client for the Packet (Equinix Metal) API and
// the only user of packngo. It adds what packngo lacks: one shared limiter
// paced from the server's rate headers, a 429 gate that pauses every
// caller, retries for idempotent calls only, per-request timeouts and
// cancellation through context, paging that does not trust the service's
// hrefs, and errors that name the operation and the device.
package packet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/packethost/packngo"
)

// DefaultAPIURL is the service's endpoint, used when neither --api-url nor
// PACKET_API_URL is given.
const DefaultAPIURL = "https://api.equinix.com/metal/v1/"

// Defaults for the Config fields left zero.
const (
	DefaultRequestTimeout = 30 * time.Second
	DefaultMaxRetries     = 5
	DefaultRetryBudget    = 2 * time.Minute
	DefaultUserAgent      = "lkfleet/dev"
)

// Config configures a Client.
type Config struct {
	// APIURL is the API base URL, e.g. "https://api.equinix.com/metal/v1/".
	APIURL string
	// Token is the API token (X-Auth-Token). It never appears in errors,
	// debug output or String forms of anything this package returns.
	Token string
	// Project is the project UUID every device call is about.
	Project string
	// Fleet is the fleet name whose tag List filters on.
	Fleet string
	// UserAgent is sent on every request, e.g. "lkfleet/1.2.0".
	UserAgent string
	// Rate caps requests per second (--rate); 0 = only the server's limit.
	Rate float64
	// RequestTimeout bounds each attempt, body included (default 30s).
	RequestTimeout time.Duration
	// MaxRetries bounds retries of failed (5xx, transport) attempts of
	// idempotent requests (default 5; negative = none).
	MaxRetries int
	// RetryBudget bounds the total time one call spends retrying, 429
	// pauses included (default 2m).
	RetryBudget time.Duration
	// Debug, if set, receives every request and response with the token
	// redacted (--debug).
	Debug io.Writer
	// HTTPClient optionally supplies the base transport (TLS settings,
	// proxies). Its Transport is wrapped, never replaced.
	HTTPClient *http.Client

	// timerOnly makes the pacer wait on timers alone, never yielding in
	// a loop (see spinSpan): a loop never blocks, so under a fake clock
	// (testing/synctest) time would never move on.
	timerOnly bool
}

// Client talks to one project of the API on behalf of one fleet. It is
// safe for concurrent use; every call shares one limiter.
type Client struct {
	apiURL    string
	project   string
	fleet     string
	userAgent string
	tok       *secret
	tr        *transport
	// closeIdle releases the base transport's idle connections, if we own it.
	closeIdle func()

	cat catalogueCache
	// bound recycles the packngo clients of calls (see api).
	bound sync.Pool
}

// TokenFromEnv returns the API token from PACKET_AUTH_TOKEN, else
// PACKET_API_KEY, else METAL_AUTH_TOKEN; "" if none is set.
func TokenFromEnv(getenv func(string) string) string {
	for _, k := range []string{"PACKET_AUTH_TOKEN", "PACKET_API_KEY", "METAL_AUTH_TOKEN"} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
	}
	return ""
}

// APIURLFromEnv returns PACKET_API_URL, else DefaultAPIURL.
func APIURLFromEnv(getenv func(string) string) string {
	if v := strings.TrimSpace(getenv("PACKET_API_URL")); v != "" {
		return v
	}
	return DefaultAPIURL
}

// New checks cfg and returns a Client. It makes no request.
func New(cfg Config) (*Client, error) {
	tok := &secret{cfg.Token}
	if cfg.Token == "" {
		return nil, errors.New("no API token: set PACKET_AUTH_TOKEN (or PACKET_API_KEY, METAL_AUTH_TOKEN)")
	}
	if cfg.Project == "" {
		return nil, errors.New("no project: set PACKET_PROJECT_ID, --project or the fleet file's project")
	}
	apiURL := cfg.APIURL
	if apiURL == "" {
		apiURL = DefaultAPIURL
	}
	u, err := url.Parse(apiURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API URL %q: want http(s)://HOST/PATH/", tok.redact(apiURL))
	}
	// packngo resolves relative paths against the base: without the
	// trailing slash the last segment ("v1") would be dropped.
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if cfg.Rate < 0 {
		return nil, fmt.Errorf("rate %g: must be 0 (no cap) or positive", cfg.Rate)
	}
	c := &Client{
		apiURL:    u.String(),
		project:   cfg.Project,
		fleet:     cfg.Fleet,
		userAgent: cfg.UserAgent,
		tok:       tok,
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	var base http.RoundTripper
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		base = cfg.HTTPClient.Transport
	} else {
		// Our own transport, not http.DefaultTransport: Close must be able
		// to drop its idle connections without touching anyone else's.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		base = t
	}
	if ci, ok := base.(interface{ CloseIdleConnections() }); ok {
		c.closeIdle = ci.CloseIdleConnections
	}
	c.tr = &transport{
		base:       base,
		pacer:      newPacer(cfg.Rate, !cfg.timerOnly),
		timeout:    orDefault(cfg.RequestTimeout, DefaultRequestTimeout),
		maxRetries: cfg.MaxRetries,
		budget:     orDefault(cfg.RetryBudget, DefaultRetryBudget),
		tok:        tok,
		debug:      cfg.Debug,

		backoffBase: backoffBase,
	}
	if cfg.MaxRetries == 0 {
		c.tr.maxRetries = DefaultMaxRetries
	} else if cfg.MaxRetries < 0 {
		c.tr.maxRetries = 0
	}
	// Fail now, not on the first call, if packngo rejects the options.
	if _, err := c.newAPI(c.tr); err != nil {
		return nil, fmt.Errorf("API client: %w", tok.redactErr(err))
	}
	return c, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Stats returns the transport's counters (requests on the wire, 429s,
// retries) for the Client's whole life.
func (c *Client) Stats() Stats { return c.tr.stats() }

// Close releases idle connections. The Client stays usable.
func (c *Client) Close() error {
	if c.closeIdle != nil {
		c.closeIdle()
	}
	return nil
}

// String describes the client without its token.
func (c *Client) String() string {
	return fmt.Sprintf("packet.Client{%s project %s fleet %s}", c.apiURL, c.project, c.fleet)
}

// api returns a packngo client whose requests all carry ctx, and release,
// which gives it back: the caller must not use it afterwards (release is
// never nil, so it can be deferred before err is checked).
//
// packngo takes no context, and its Client writes its RateLimit field on
// every response without a lock, so one packngo client must never serve two
// calls at once. Each call therefore gets a packngo client of its own whose
// http.Client binds ctx to the requests it sends, in front of the one shared
// transport (limiter, gate, retries, counters). Building one costs about 40
// allocations (one struct per service, two URL parses, a header map), a
// quarter of the client's allocations per create, so they are recycled.
func (c *Client) api(ctx context.Context) (pc *packngo.Client, release func(), err error) {
	b, _ := c.bound.Get().(*boundClient)
	if b == nil {
		b = &boundClient{binder: ctxBinder{next: c.tr}}
		if b.pc, err = c.newAPI(&b.binder); err != nil {
			return nil, func() {}, err
		}
	}
	b.binder.ctx = ctx
	return b.pc, func() { b.binder.ctx = nil; c.bound.Put(b) }, nil
}

// newAPI is a packngo client sending through rt.
func (c *Client) newAPI(rt http.RoundTripper) (*packngo.Client, error) {
	hc := &http.Client{Transport: rt}
	pc, err := packngo.NewClient(
		packngo.WithAuth("lkfleet", c.tok.v),
		packngo.WithBaseURL(c.apiURL),
		packngo.WithHTTPClient(hc),
	)
	if err != nil {
		return nil, err
	}
	pc.UserAgent = c.userAgent
	return pc, nil
}

// boundClient is a recycled packngo client and the binder its requests
// go through.
type boundClient struct {
	pc     *packngo.Client
	binder ctxBinder
}

// ctxBinder gives every request the context of the call it belongs to.
type ctxBinder struct {
	ctx  context.Context
	next http.RoundTripper
}

func (b ctxBinder) RoundTrip(req *http.Request) (*http.Response, error) {
	return b.next.RoundTrip(req.WithContext(b.ctx))
}

func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
