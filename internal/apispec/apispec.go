// Package apispec gives tests the official Packet (Equinix Metal) API
// description and an http.RoundTripper that checks every exchange against
// it. Both the simulator's contract tests and the client's tests use it, so
// "valid" means the same thing on both sides of the wire.
//
// The description lives outside the module, in
// ../shared/metal-openapi/metal-openapi.json relative to the repository
// root; tests skip when it is absent.
package apispec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// relPath is the description's location relative to the repository root.
var relPath = filepath.Join("..", "shared", "metal-openapi", "metal-openapi.json")

// Path locates the description: it walks up from the working directory to
// the directory holding go.mod and looks in ../shared/metal-openapi. ok is
// false when there is no such file.
func Path() (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
	p := filepath.Join(dir, relPath)
	if _, err := os.Stat(p); err != nil {
		return p, false
	}
	return p, true
}

// The description is parsed once per test binary: it is large and
// read-only afterwards (nothing here mutates it, so tests may share it).
var (
	loadOnce sync.Once
	loaded   *openapi3.T
	router   routers.Router
	loadErr  error
)

// Load returns the parsed, validated description, skipping t when the
// file is absent and failing it when the file does not load.
func Load(t testing.TB) *openapi3.T {
	t.Helper()
	p, ok := Path()
	if !ok {
		t.Skipf("API description not found (want %s at the repository root's ../shared/metal-openapi/): skipping contract checks", relPath)
	}
	loadOnce.Do(func() { loaded, router, loadErr = load(p) })
	if loadErr != nil {
		t.Fatalf("load API description: %v", loadErr)
	}
	return loaded
}

func load(path string) (*openapi3.T, routers.Router, error) {
	// Path ids are format uuid; kin-openapi checks that format only once
	// it is defined.
	openapi3.DefineStringFormatValidator("uuid", openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC4122))
	doc, err := openapi3.NewLoader().LoadFromFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("parse %s: %w", path, err)
	}
	err = doc.Validate(context.Background(),
		openapi3.DisableSchemaPatternValidation(), // BGP patterns use (?= which Go's regexp lacks
		openapi3.DisableExamplesValidation(),
		openapi3.AllowExtraSiblingFields("available_servers", "operation", "properties", "type"))
	if err != nil {
		return nil, nil, fmt.Errorf("validate %s: %w", path, err)
	}
	r, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("route %s: %w", path, err)
	}
	return doc, r, nil
}

// specServer is the server URL the description declares; requests are
// matched as if sent there, so the shared description is never mutated.
func specServer(doc *openapi3.T) (*url.URL, error) {
	if len(doc.Servers) == 0 {
		return nil, errors.New("API description declares no server")
	}
	return url.Parse(doc.Servers[0].URL)
}

// NewValidatingTransport returns a RoundTripper that sends requests with
// base (nil = http.DefaultTransport) and reports through t.Errorf every
// request and every response that does not match doc (from Load). The
// request's path below /metal/v1/ is matched against the description
// whatever host it is sent to. Statuses the description does not list
// (429, 502, ...) are not checked; bodies cut short by the server are
// passed on with their read error and not checked. It is safe for
// concurrent use.
func NewValidatingTransport(t testing.TB, doc *openapi3.T, base http.RoundTripper) http.RoundTripper {
	t.Helper()
	if base == nil {
		base = http.DefaultTransport
	}
	srv, err := specServer(doc)
	if err != nil {
		t.Fatalf("validating transport: %v", err)
	}
	r := router
	if doc != loaded || r == nil {
		if r, err = gorillamux.NewRouter(doc); err != nil {
			t.Fatalf("validating transport: route API description: %v", err)
		}
	}
	return &validator{t: t, base: base, router: r, server: srv}
}

type validator struct {
	t      testing.TB
	base   http.RoundTripper
	router routers.Router
	server *url.URL
}

// options for both directions. Authentication only checks that the token
// header is present: its value is the server's business.
func options() *openapi3filter.Options {
	return &openapi3filter.Options{
		MultiError: true,
		AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
			if in.RequestValidationInput.Request.Header.Get("X-Auth-Token") == "" {
				return errors.New("missing X-Auth-Token header")
			}
			return nil
		},
	}
}

func (v *validator) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("validating transport: read request body: %w", err)
		}
		body = b
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	what := req.Method + " " + req.URL.Path

	// Match the request as if it were sent to the described server.
	mreq := req.Clone(req.Context())
	mreq.Body = io.NopCloser(bytes.NewReader(body))
	mreq.URL.Scheme, mreq.URL.Host = v.server.Scheme, v.server.Host
	if i := strings.Index(req.URL.Path, "/metal/v1/"); i >= 0 {
		mreq.URL.Path = strings.TrimSuffix(v.server.Path, "/") + req.URL.Path[i+len("/metal/v1"):]
		mreq.URL.RawPath = ""
	}
	mreq.Host = v.server.Host
	var in *openapi3filter.RequestValidationInput
	route, params, err := v.router.FindRoute(mreq)
	if err != nil {
		v.t.Errorf("%s: no such operation in the API description: %v", what, err)
	} else {
		in = &openapi3filter.RequestValidationInput{Request: mreq, PathParams: params, Route: route, Options: options()}
		if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
			v.t.Errorf("%s: request does not match the API description: %v\nbody: %s", what, err, clip(body))
		}
	}

	resp, err := v.base.RoundTrip(req)
	if err != nil || in == nil {
		return resp, err
	}
	rb, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		// Cut short by the server: hand the client what came and the error.
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(rb), errReader{rerr}))
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(rb)),
		Options:                options(),
	}
	if err := openapi3filter.ValidateResponse(req.Context(), out); err != nil {
		v.t.Errorf("%s: %d response does not match the API description: %v\nbody: %s", what, resp.StatusCode, err, clip(rb))
	}
	return resp, nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// clip keeps failure messages readable.
func clip(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "..."
	}
	return string(b)
}
