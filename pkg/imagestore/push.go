package imagestore

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	tm "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"golang.org/x/sync/errgroup"
)

// EventKind says what happened to one file on one location.
type EventKind string

// The kinds of push events, in the order a file meets them.
const (
	// FileStart: the upload of a file begins (Total is its size).
	FileStart EventKind = "start"
	// FileProgress: Bytes of Total were read for upload.
	FileProgress EventKind = "progress"
	// FileSkip: the object is already there with the same size and digest.
	FileSkip EventKind = "skip"
	// FileDone: the object was uploaded.
	FileDone EventKind = "done"
	// Published: the manifest was written; the release exists here.
	Published EventKind = "published"
	// UpToDate: the release was already complete here; nothing written.
	UpToDate EventKind = "up-to-date"
	// Failed: pushing to this location failed (Err).
	Failed EventKind = "failed"
)

// Event is one step of a push, sent to PushOptions.Progress. Events of
// different locations arrive concurrently; the callback must lock.
type Event struct {
	Kind     EventKind
	Location string // Describe(loc)
	Zone     string // "" for the default store
	File     string // "" for release-level events
	Bytes    int64
	Total    int64
	Err      error
}

// PushOptions tune a push.
type PushOptions struct {
	// Progress receives events; nil discards them.
	Progress func(Event)
	// Now stamps the manifest (nil: time.Now).
	Now func() time.Time
	// SetLatest moves the latest pointer to the pushed release (default
	// behaviour of lkfleet push).
	SetLatest bool
}

// Result is what a push did on one location.
type Result struct {
	Location string
	Zone     string
	Release  string
	Uploaded []string // files uploaded
	Skipped  []string // files already present
	Bytes    int64    // bytes uploaded
	// Published is true when the manifest was written by this push.
	Published bool
	// LatestMoved is true when the latest pointer was changed.
	LatestMoved bool
}

// Push uploads b to every store in parallel and returns one Result per
// store, in the given order. A location that fails does not stop the
// others (a mirror being down must not hold back the rest); every failure
// is returned joined, each naming its location. On every location the
// manifest is written only after all objects are verified present, so an
// interrupted push leaves at most orphan objects that the next push
// reuses, never a manifest pointing at missing ones.
func Push(ctx context.Context, b *Build, stores []*Store, o PushOptions) ([]Result, error) {
	if o.Progress == nil {
		o.Progress = func(Event) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	pushed := o.Now().UTC()
	results := make([]Result, len(stores))
	errs := make([]error, len(stores))
	var g errgroup.Group
	for i, s := range stores {
		g.Go(func() error {
			r, err := s.push(ctx, b, pushed, o)
			results[i] = r
			if err != nil {
				errs[i] = err
				o.Progress(Event{Kind: Failed, Location: Describe(s.Loc), Zone: s.Loc.Zone, Err: err})
			}
			return nil
		})
	}
	_ = g.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return results, &PushError{Release: b.Release, Failures: failed}
	}
	return results, nil
}

// PushError lists every location a push failed on.
type PushError struct {
	Release  string
	Failures []error
}

func (e *PushError) Error() string {
	msg := fmt.Sprintf("push release %s: %d location(s) failed", e.Release, len(e.Failures))
	for _, f := range e.Failures {
		msg += "\n  " + f.Error()
	}
	return msg
}

func (e *PushError) Unwrap() []error { return e.Failures }

func (s *Store) push(ctx context.Context, b *Build, pushed time.Time, o PushOptions) (Result, error) {
	where := Describe(s.Loc)
	r := Result{Location: where, Zone: s.Loc.Zone, Release: b.Release}
	ev := func(e Event) {
		e.Location, e.Zone = where, s.Loc.Zone
		o.Progress(e)
	}
	if err := s.CheckBucket(ctx); err != nil {
		return r, err
	}
	old, err := s.manifest(ctx, b.Release)
	if err != nil {
		return r, fmt.Errorf("%s: %w", where, err)
	}
	m := Manifest{Release: b.Release, Name: b.Name, Source: b.Source, Pushed: pushed}
	if old != nil {
		// Keep the first publication's time and source: the release is the
		// same bytes, and prune orders releases by when they first appeared.
		m.Pushed, m.Source = old.Pushed, old.Source
	}
	for _, a := range b.Files {
		k := key(s.Loc, b.Release, a.Name)
		info, err := s.head(ctx, k)
		if err != nil {
			return r, fmt.Errorf("%s: %w", where, err)
		}
		reuse, err := s.reusable(ctx, k, a, info, old)
		if err != nil {
			return r, fmt.Errorf("%s: %w", where, err)
		}
		if reuse {
			r.Skipped = append(r.Skipped, a.Name)
			ev(Event{Kind: FileSkip, File: a.Name, Bytes: a.Size, Total: a.Size})
			m.Files = append(m.Files, ManifestFile{Name: a.Name, Size: a.Size, SHA256: a.SHA256, ETag: info.ETag})
			continue
		}
		etag, err := s.upload(ctx, k, a, ev)
		if err != nil {
			return r, fmt.Errorf("%s: upload %s: %w", where, a.Name, err)
		}
		r.Uploaded = append(r.Uploaded, a.Name)
		r.Bytes += a.Size
		ev(Event{Kind: FileDone, File: a.Name, Bytes: a.Size, Total: a.Size})
		m.Files = append(m.Files, ManifestFile{Name: a.Name, Size: a.Size, SHA256: a.SHA256, ETag: etag})
	}
	if old == nil || len(r.Uploaded) > 0 || !sameFiles(old, &m) {
		data, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return r, err
		}
		// The manifest goes last: from this PUT on, the release exists.
		if err := s.putSmall(ctx, key(s.Loc, b.Release, ManifestName), append(data, '\n'), "application/json"); err != nil {
			return r, fmt.Errorf("%s: publish manifest: %w", where, err)
		}
		r.Published = true
		ev(Event{Kind: Published})
	} else {
		ev(Event{Kind: UpToDate})
	}
	if o.SetLatest {
		cur, err := s.latest(ctx)
		if err != nil {
			return r, fmt.Errorf("%s: %w", where, err)
		}
		if cur == nil || cur.Release != b.Release {
			data, _ := json.Marshal(Latest{Release: b.Release, Pushed: pushed})
			if err := s.putSmall(ctx, key(s.Loc, "", LatestName), append(data, '\n'), "application/json"); err != nil {
				return r, fmt.Errorf("%s: move latest pointer: %w", where, err)
			}
			r.LatestMoved = true
		}
	}
	return r, nil
}

// reusable decides whether an object already on the store is the file.
// Size and the sha256 metadata must match, and then either the ETag is the
// one the release's manifest recorded, or (no manifest: an interrupted
// push) the object's bytes hash to the file's digest. Metadata alone is not
// proof: an object replaced by another writer may keep it on some stores.
func (s *Store) reusable(ctx context.Context, k string, a Artifact, info *objectInfo, old *Manifest) (bool, error) {
	if info == nil || info.Size != a.Size || info.SHA256 != a.SHA256 {
		return false, nil
	}
	if old != nil {
		if f, ok := old.File(a.Name); ok && f.ETag != "" {
			return f.ETag == info.ETag && f.SHA256 == a.SHA256, nil
		}
	}
	sum, err := s.hashObject(ctx, k)
	if err != nil {
		return false, err
	}
	return sum == a.SHA256, nil
}

func sameFiles(a, b *Manifest) bool {
	if len(a.Files) != len(b.Files) {
		return false
	}
	for i := range a.Files {
		if a.Files[i] != b.Files[i] {
			return false
		}
	}
	return true
}

// upload sends one file with the transfer manager (multipart above the part
// size), recording its SHA-256 as object metadata so a later push can tell
// a complete object from a partial or foreign one with a HEAD.
func (s *Store) upload(ctx context.Context, k string, a Artifact, ev func(Event)) (string, error) {
	f, err := os.Open(a.Path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	ev(Event{Kind: FileStart, File: a.Name, Total: a.Size})
	body := &countingReader{r: f, total: a.Size, report: func(n int64) {
		ev(Event{Kind: FileProgress, File: a.Name, Bytes: n, Total: a.Size})
	}}
	client := tm.New(s.s3, func(o *tm.Options) {
		if s.partSize > 0 {
			o.PartSizeBytes = s.partSize
			o.MultipartUploadThreshold = s.partSize
		}
	})
	out, err := client.UploadObject(ctx, &tm.UploadObjectInput{
		Bucket:        aws.String(s.Loc.Bucket),
		Key:           aws.String(k),
		Body:          body,
		ContentLength: aws.Int64(a.Size),
		ContentType:   aws.String("application/octet-stream"),
		Metadata:      map[string]string{"sha256": a.SHA256},
	})
	if err != nil {
		return "", err
	}
	// The transfer manager read the file to its end; the object on the
	// store must now say the same size and digest, or the manifest would
	// promise something the store does not hold.
	info, err := s.head(ctx, k)
	if err != nil {
		return "", err
	}
	if info == nil || info.Size != a.Size || info.SHA256 != a.SHA256 {
		return "", fmt.Errorf("s3://%s/%s is not what was uploaded after the upload (size %v)", s.Loc.Bucket, k, sizeOf(info))
	}
	// The HEAD's ETag is the one readers will see (the upload's answer may
	// be quoted differently by some stores).
	_ = out
	return info.ETag, nil
}

func sizeOf(i *objectInfo) any {
	if i == nil {
		return "missing"
	}
	return i.Size
}

// countingReader reports progress as the transfer manager reads the file.
// Reads are sequential (the manager buffers parts from one reader), so the
// count is monotonic.
type countingReader struct {
	r      io.Reader
	n      int64
	total  int64
	mu     sync.Mutex
	report func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.n += int64(n)
		done := c.n
		c.mu.Unlock()
		c.report(done)
	}
	return n, err
}
