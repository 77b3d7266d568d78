package ipxe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// RequestTimeout bounds each request this package makes, whatever the
// client's own timeout: an artifact server that accepts connections and
// never answers must not hang a plan.
const RequestTimeout = 15 * time.Second

// Concurrency is how many requests run at once.
const Concurrency = 8

// maxBody bounds what is read from a cmdline file or a served script.
const maxBody = 1 << 20

// FetchError is one failed request: a transport error or an unexpected HTTP
// status.
type FetchError struct {
	Method string
	URL    string
	Status int   // HTTP status, 0 when no response arrived
	Err    error // transport error, or nil with Status set
}

func (e *FetchError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s %s: %v", e.Method, e.URL, e.Err)
	}
	return fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
}

func (e *FetchError) Unwrap() error { return e.Err }

// ArtifactsError collects every failure of a preflight or a cmdline fetch,
// sorted by URL, so one run shows the user everything that is missing.
type ArtifactsError struct {
	What     string // the operation: "check boot artifacts", "fetch cmdline", ...
	Total    int    // URLs checked
	Failures []error
}

func (e *ArtifactsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d of %d URLs failed:", e.What, len(e.Failures), e.Total)
	for _, f := range e.Failures {
		b.WriteString("\n  ")
		b.WriteString(strings.ReplaceAll(f.Error(), "\n", "\n  "))
	}
	return b.String()
}

func (e *ArtifactsError) Unwrap() []error { return e.Failures }

// FetchCmdlines resolves the kernel command line of every image the devices
// use, keyed by image key: the image's own cmdline when given, else the
// trimmed content of <base_url>/<name>-cmdline, fetched once per URL and
// concurrently. Every failing URL is reported in one *ArtifactsError.
func FetchCmdlines(ctx context.Context, client *http.Client, devs []spec.Device) (map[string]string, error) {
	out := map[string]string{}
	urlOf := map[string]string{} // image key -> cmdline URL to fetch
	for _, d := range devs {
		img := d.Image
		if img.Cmdline != "" {
			out[img.Key] = img.Cmdline
		} else {
			urlOf[img.Key] = img.CmdlineURL()
		}
	}
	var urls []string
	for _, u := range urlOf {
		urls = append(urls, u)
	}
	bodies, err := forEachURL(ctx, "fetch cmdline", urls, func(ctx context.Context, u string) (string, error) {
		return get(ctx, client, u)
	})
	if err != nil {
		return nil, err
	}
	for key, u := range urlOf {
		out[key] = strings.TrimSpace(bodies[u])
	}
	return out, nil
}

// Preflight HEADs every distinct kernel and initrd URL the devices boot and
// reports every one that does not answer 2xx in one *ArtifactsError. A
// server that refuses HEAD (405, 501) is asked for the first byte instead.
//
// Only the default script's URLs are known: a custom ipxe_template may boot
// anything, and its image's kernel and initrd are checked all the same.
func Preflight(ctx context.Context, client *http.Client, devs []spec.Device) error {
	set := map[string]bool{}
	for _, d := range devs {
		set[d.Image.KernelURL()] = true
		set[d.Image.InitrdURL()] = true
	}
	urls := make([]string, 0, len(set))
	for u := range set {
		urls = append(urls, u)
	}
	_, err := forEachURL(ctx, "check boot artifacts", urls, func(ctx context.Context, u string) (string, error) {
		return "", head(ctx, client, u)
	})
	return err
}

// forEachURL runs fn for each distinct URL with bounded concurrency and
// collects every failure. It never stops early on a failure: the point is
// to report all of them at once.
func forEachURL(ctx context.Context, what string, urls []string, fn func(context.Context, string) (string, error)) (map[string]string, error) {
	slices.Sort(urls)
	urls = slices.Compact(urls)
	var (
		mu       sync.Mutex
		results  = make(map[string]string, len(urls))
		failures []error
	)
	var g errgroup.Group
	g.SetLimit(Concurrency)
	for _, u := range urls {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			body, err := fn(ctx, u)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, err)
			} else {
				results[u] = body
			}
			return nil
		})
	}
	_ = g.Wait() // the workers never return errors; failures are collected
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(failures) > 0 {
		slices.SortFunc(failures, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
		return nil, &ArtifactsError{What: what, Total: len(urls), Failures: failures}
	}
	return results, nil
}

func head(ctx context.Context, client *http.Client, u string) error {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := do(ctx, client, http.MethodHead, u, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusMethodNotAllowed || resp.StatusCode == http.StatusNotImplemented {
		resp, err = do(ctx, client, http.MethodGet, u, http.Header{"Range": {"bytes=0-0"}})
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return &FetchError{Method: http.MethodGet, URL: u, Status: resp.StatusCode}
		}
		return nil
	}
	if resp.StatusCode/100 != 2 {
		return &FetchError{Method: http.MethodHead, URL: u, Status: resp.StatusCode}
	}
	return nil
}

// get returns the body of a 2xx answer to GET u.
func get(ctx context.Context, client *http.Client, u string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	resp, err := do(ctx, client, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", &FetchError{Method: http.MethodGet, URL: u, Status: resp.StatusCode}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return "", &FetchError{Method: http.MethodGet, URL: u, Err: fmt.Errorf("read body: %w", cleanErr(err))}
	}
	if len(body) > maxBody {
		return "", &FetchError{Method: http.MethodGet, URL: u, Err: fmt.Errorf("body larger than %d bytes", maxBody)}
	}
	return string(body), nil
}

// do sends one request; the caller bounds ctx with RequestTimeout around
// both the request and reading the body.
func do(ctx context.Context, client *http.Client, method, u string, h http.Header) (*http.Response, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, &FetchError{Method: method, URL: u, Err: err}
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, &FetchError{Method: method, URL: u, Err: cleanErr(err)}
	}
	return resp, nil
}

// cleanErr drops the *url.Error wrapper, which repeats the method and URL
// the FetchError already names, and says "timed out" for deadlines.
func cleanErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out: %w", err)
	}
	return err
}
