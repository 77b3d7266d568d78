package imagestore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// IncompleteAge is how old the newest object of a release without a
// manifest must be before prune deletes it: younger, it may be a push
// still running elsewhere.
const IncompleteAge = 24 * time.Hour

// ReleaseInfo is one release found on a store.
type ReleaseInfo struct {
	ID string
	// Pushed is the manifest's time; for an incomplete release (no
	// manifest) the newest object's modification time.
	Pushed   time.Time
	Complete bool
	Keys     []string
	Bytes    int64
}

// Releases lists every release directory under the store's prefix, newest
// first. Keys that are not inside a release (the latest pointer, foreign
// objects) are ignored and never deleted.
func (s *Store) Releases(ctx context.Context) ([]ReleaseInfo, error) {
	base := releasePrefix(s.Loc, "")
	byID := map[string]*ReleaseInfo{}
	p := s3.NewListObjectsV2Paginator(s.s3, &s3.ListObjectsV2Input{Bucket: &s.Loc.Bucket, Prefix: aws.String(base)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: list releases: %w", Describe(s.Loc), err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			id, rest, ok := strings.Cut(strings.TrimPrefix(k, base), "/")
			if !ok || !ValidReleaseID(id) || rest == "" || strings.Contains(rest, "/") {
				continue
			}
			r := byID[id]
			if r == nil {
				r = &ReleaseInfo{ID: id}
				byID[id] = r
			}
			r.Keys = append(r.Keys, k)
			r.Bytes += aws.ToInt64(o.Size)
			if rest == ManifestName {
				r.Complete = true
			}
			if t := aws.ToTime(o.LastModified); t.After(r.Pushed) && !r.Complete {
				r.Pushed = t
			}
		}
	}
	var out []ReleaseInfo
	for _, r := range byID {
		if r.Complete {
			m, err := s.manifest(ctx, r.ID)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", Describe(s.Loc), err)
			}
			if m != nil {
				r.Pushed = m.Pushed
			}
		}
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b ReleaseInfo) int {
		return cmp.Or(b.Pushed.Compare(a.Pushed), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// PruneDecision is what prune does with one release on one store.
type PruneDecision struct {
	Release ReleaseInfo
	Delete  bool
	Reason  string
}

// PlanPrune decides, for releases listed newest first, which to delete:
// every complete release beyond the newest keep that no device runs and
// the latest pointer does not name, and incomplete releases (interrupted
// pushes) older than IncompleteAge. It is pure: the caller shows the
// decisions and asks before DeleteRelease is called.
func PlanPrune(releases []ReleaseInfo, keep int, inUse map[string]bool, latest string, now time.Time) []PruneDecision {
	out := make([]PruneDecision, 0, len(releases))
	complete := 0
	for _, r := range releases {
		d := PruneDecision{Release: r}
		switch {
		case !r.Complete && now.Sub(r.Pushed) >= IncompleteAge:
			d.Delete, d.Reason = true, "incomplete (no manifest): an interrupted push"
		case !r.Complete:
			d.Reason = "incomplete and recent: a push may be running"
		case inUse[r.ID]:
			complete++
			d.Reason = "in use by a device"
		case r.ID == latest:
			complete++
			d.Reason = "the latest pointer names it"
		default:
			complete++
			if complete <= keep {
				d.Reason = fmt.Sprintf("among the newest %d", keep)
			} else {
				d.Delete, d.Reason = true, fmt.Sprintf("older than the newest %d and not in use", keep)
			}
		}
		out = append(out, d)
	}
	return out
}

// Latest returns the release the store's latest pointer names, "" if none.
func (s *Store) Latest(ctx context.Context) (string, error) {
	l, err := s.latest(ctx)
	if err != nil || l == nil {
		return "", err
	}
	return l.Release, nil
}

// DeleteRelease removes a release: its manifest first, so readers stop
// seeing the release at once and an interrupted delete leaves only an
// incomplete release, then its objects.
func (s *Store) DeleteRelease(ctx context.Context, r ReleaseInfo) error {
	mk := key(s.Loc, r.ID, ManifestName)
	if _, err := s.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.Loc.Bucket, Key: &mk}); err != nil && !isNotFound(err) {
		return fmt.Errorf("%s: delete release %s: %w", Describe(s.Loc), r.ID, err)
	}
	var ids []types.ObjectIdentifier
	for _, k := range r.Keys {
		if k != mk {
			ids = append(ids, types.ObjectIdentifier{Key: aws.String(k)})
		}
	}
	// One DeleteObject per key: some S3-compatible stores lack the
	// multi-object delete, and a release has three or four objects.
	for _, id := range ids {
		if _, err := s.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.Loc.Bucket, Key: id.Key}); err != nil && !isNotFound(err) {
			return fmt.Errorf("%s: delete release %s: %w", Describe(s.Loc), r.ID, err)
		}
	}
	return nil
}
