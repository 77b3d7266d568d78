package imagestore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Depth says how thoroughly a release is verified.
//
// What each depth can honestly promise for an S3 store:
//   - Quick: every object exists, its size is the manifest's, and its ETag
//     is the one the store gave when lkfleet uploaded it. This catches a
//     missing, truncated, partially uploaded or replaced object (any write
//     through the S3 API changes the ETag), at the cost of one HEAD per
//     object. It cannot see bytes that rot on the store's disk behind its
//     back: the store keeps answering the ETag it computed at upload time.
//   - Full: every object is read and its SHA-256 compared with the
//     manifest. The only check that proves the bytes, at the cost of
//     reading them.
type Depth int

const (
	// Quick checks existence, size and ETag with HEAD requests.
	Quick Depth = iota
	// Full also reads every object and checks its SHA-256.
	Full
)

// Problem is one object that does not match its release manifest.
type Problem struct {
	Location string // Describe(loc)
	URL      string
	Msg      string
}

func (p Problem) String() string { return p.URL + " on " + p.Location + ": " + p.Msg }

// VerifyError lists every object that failed verification.
type VerifyError struct {
	Problems []Problem
}

func (e *VerifyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "verify images: %d object(s) missing, partial, stale or corrupted:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Checker verifies releases over plain HTTP(S), through the public URL the
// devices boot from: no credentials, and it checks what will be fetched.
type Checker struct {
	HTTP  *http.Client
	Depth Depth
	mu    sync.Mutex
	cache map[string]*Manifest // manifest URL -> manifest
}

// NewChecker returns a Checker using client.
func NewChecker(client *http.Client, d Depth) *Checker {
	return &Checker{HTTP: client, Depth: d, cache: map[string]*Manifest{}}
}

// Manifest fetches the manifest of release on loc (cached per URL).
func (c *Checker) Manifest(ctx context.Context, loc spec.StoreLocation, release string) (*Manifest, error) {
	u := URL(loc, release, ManifestName)
	c.mu.Lock()
	m, ok := c.cache[u]
	c.mu.Unlock()
	if ok {
		return m, nil
	}
	data, status, err := c.get(ctx, u, 1<<20)
	switch {
	case err != nil:
		return nil, fmt.Errorf("GET %s: %w", u, err)
	case status == http.StatusNotFound || status == http.StatusForbidden:
		return nil, fmt.Errorf("release %s is not published on %s (GET %s: %d)", release, Describe(loc), u, status)
	case status != http.StatusOK:
		return nil, fmt.Errorf("GET %s: %d %s", u, status, http.StatusText(status))
	}
	m, err = decodeManifest(data, u)
	if err != nil {
		return nil, err
	}
	if m.Release != release {
		return nil, fmt.Errorf("manifest %s names release %s, not %s", u, m.Release, release)
	}
	c.mu.Lock()
	c.cache[u] = m
	c.mu.Unlock()
	return m, nil
}

// Latest reads the latest pointer of loc.
func (c *Checker) Latest(ctx context.Context, loc spec.StoreLocation) (string, error) {
	u := URL(loc, "", LatestName)
	data, status, err := c.get(ctx, u, 1<<16)
	switch {
	case err != nil:
		return "", fmt.Errorf("GET %s: %w", u, err)
	case status == http.StatusNotFound || status == http.StatusForbidden:
		return "", fmt.Errorf("nothing pushed to %s yet (GET %s: %d): run lkfleet push, or pin a release", Describe(loc), u, status)
	case status != http.StatusOK:
		return "", fmt.Errorf("GET %s: %d %s", u, status, http.StatusText(status))
	}
	l, err := decodeLatest(data, u)
	if err != nil {
		return "", err
	}
	return l.Release, nil
}

func (c *Checker) get(ctx context.Context, u string, limit int64) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil, resp.StatusCode, nil
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	return data, resp.StatusCode, err
}

// Target is one object to verify: a file of a release on a location.
type Target struct {
	Loc     spec.StoreLocation
	Release string
	File    string
}

// Verify checks every target against its release manifest on its own
// location, concurrently, and returns every problem in one *VerifyError
// sorted by URL. Duplicate targets are checked once.
func (c *Checker) Verify(ctx context.Context, targets []Target) error {
	seen := map[string]bool{}
	var uniq []Target
	for _, t := range targets {
		u := URL(t.Loc, t.Release, t.File)
		if !seen[u] {
			seen[u] = true
			uniq = append(uniq, t)
		}
	}
	var mu sync.Mutex
	var probs []Problem
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, t := range uniq {
		g.Go(func() error {
			msg, err := c.check(gctx, t)
			if err != nil {
				return err
			}
			if msg != "" {
				mu.Lock()
				probs = append(probs, Problem{Location: Describe(t.Loc), URL: URL(t.Loc, t.Release, t.File), Msg: msg})
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if len(probs) == 0 {
		return nil
	}
	slices.SortFunc(probs, func(a, b Problem) int { return strings.Compare(a.URL, b.URL) })
	return &VerifyError{Problems: probs}
}

// check returns a problem message, "" when the object is good, and an
// error only when ctx ended.
func (c *Checker) check(ctx context.Context, t Target) (string, error) {
	m, err := c.Manifest(ctx, t.Loc, t.Release)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return err.Error(), nil
	}
	want, ok := m.File(t.File)
	if !ok {
		return fmt.Sprintf("not in the manifest of release %s", t.Release), nil
	}
	u := URL(t.Loc, t.Release, t.File)
	method := http.MethodHead
	if c.Depth == Full {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err.Error(), nil
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return fmt.Sprintf("%s: %v", method, err), nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("missing: %s answered %d %s", method, resp.StatusCode, http.StatusText(resp.StatusCode)), nil
	}
	if resp.ContentLength != want.Size {
		return fmt.Sprintf("partial or stale: %d bytes, the manifest says %d", resp.ContentLength, want.Size), nil
	}
	if etag := resp.Header.Get("ETag"); etag != "" && want.ETag != "" && etag != want.ETag {
		return fmt.Sprintf("replaced since it was pushed: ETag %s, the manifest says %s", etag, want.ETag), nil
	}
	if c.Depth == Full {
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return fmt.Sprintf("read after %d bytes: %v", n, err), nil
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != want.SHA256 {
			return fmt.Sprintf("corrupted: SHA-256 %s, the manifest says %s", got, want.SHA256), nil
		}
	}
	return "", nil
}

// ReleaseTargets lists every file of a release on loc, from its manifest
// names: kernel, initrd and cmdline of image name.
func ReleaseTargets(loc spec.StoreLocation, release, name string) []Target {
	out := make([]Target, 0, len(Suffixes))
	for _, s := range Suffixes {
		out = append(out, Target{Loc: loc, Release: release, File: name + s})
	}
	return out
}

// IsVerifyError reports whether err is a verification failure (as opposed
// to an interruption).
func IsVerifyError(err error) bool {
	var ve *VerifyError
	return errors.As(err, &ve)
}
