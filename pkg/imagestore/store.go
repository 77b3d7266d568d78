package imagestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// Store is an S3 client bound to one location (a default store or a
// mirror).
type Store struct {
	Loc spec.StoreLocation
	s3  *s3.Client
	// partSize is the multipart part size (0: the transfer manager's).
	partSize int64
}

// Options tune how stores are reached.
type Options struct {
	// HTTPClient carries S3 requests (nil: the SDK's default).
	HTTPClient *http.Client
	// PartSize is the multipart part size in bytes (0: 8 MiB). Files larger
	// than it are uploaded in parts.
	PartSize int64
}

// ErrNoCredentials is returned when the AWS credential chain yields
// nothing.
var ErrNoCredentials = errors.New("no storage credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a shared config file (never the fleet file)")

// Open connects to loc with credentials from the standard AWS chain
// (environment, shared config and credentials files, SSO, instance
// roles). The credentials are checked once here so that their absence is
// one clear error rather than a signature failure per object; they are
// never printed.
func Open(ctx context.Context, loc spec.StoreLocation, o Options) (*Store, error) {
	opts := []func(*config.LoadOptions) error{config.WithRegion(loc.Region)}
	if o.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(o.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	if cfg.Credentials == nil {
		return nil, ErrNoCredentials
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cfg.Credentials.Retrieve(cctx); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, ErrNoCredentials
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if loc.Endpoint != "" {
			so.BaseEndpoint = aws.String(loc.Endpoint)
		}
		so.UsePathStyle = loc.PathStyle
	})
	return &Store{Loc: loc, s3: client, partSize: o.PartSize}, nil
}

// CheckBucket fails clearly when the bucket does not exist or cannot be
// reached, before anything is uploaded.
func (s *Store) CheckBucket(ctx context.Context) error {
	_, err := s.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.Loc.Bucket})
	if err == nil {
		return nil
	}
	if isNotFound(err) {
		return fmt.Errorf("%s: bucket %q does not exist at %s", Describe(s.Loc), s.Loc.Bucket, s.endpoint())
	}
	return fmt.Errorf("%s: check bucket: %w", Describe(s.Loc), err)
}

func (s *Store) endpoint() string {
	if s.Loc.Endpoint == "" {
		return "AWS " + s.Loc.Region
	}
	return s.Loc.Endpoint
}

// objectInfo is what a HEAD tells about an object.
type objectInfo struct {
	Size   int64
	ETag   string
	SHA256 string // from the object's sha256 metadata, "" if none
}

// head returns nil info, nil error when the object does not exist.
func (s *Store) head(ctx context.Context, k string) (*objectInfo, error) {
	out, err := s.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.Loc.Bucket, Key: &k})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("HEAD s3://%s/%s: %w", s.Loc.Bucket, k, err)
	}
	return &objectInfo{Size: aws.ToInt64(out.ContentLength), ETag: aws.ToString(out.ETag), SHA256: out.Metadata["sha256"]}, nil
}

// get returns nil data, nil error when the object does not exist.
func (s *Store) get(ctx context.Context, k string, limit int64) ([]byte, error) {
	out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Loc.Bucket, Key: &k})
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("GET s3://%s/%s: %w", s.Loc.Bucket, k, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, limit))
	if err != nil {
		return nil, fmt.Errorf("GET s3://%s/%s: %w", s.Loc.Bucket, k, err)
	}
	return data, nil
}

// hashObject reads an object and returns its SHA-256 ("" if it vanished).
func (s *Store) hashObject(ctx context.Context, k string) (string, error) {
	out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Loc.Bucket, Key: &k})
	if isNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("GET s3://%s/%s: %w", s.Loc.Bucket, k, err)
	}
	defer out.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, out.Body); err != nil {
		return "", fmt.Errorf("GET s3://%s/%s: %w", s.Loc.Bucket, k, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// putSmall writes a small object (manifest, latest pointer) in one PUT.
func (s *Store) putSmall(ctx context.Context, k string, data []byte, contentType string) error {
	_, err := s.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.Loc.Bucket, Key: &k, Body: bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))), ContentType: aws.String(contentType),
		CacheControl: aws.String("no-cache"),
	})
	if err != nil {
		return fmt.Errorf("PUT s3://%s/%s: %w", s.Loc.Bucket, k, err)
	}
	return nil
}

// manifest reads a release's manifest; nil, nil when the release does not
// exist (no manifest).
func (s *Store) manifest(ctx context.Context, release string) (*Manifest, error) {
	k := key(s.Loc, release, ManifestName)
	data, err := s.get(ctx, k, 1<<20)
	if err != nil || data == nil {
		return nil, err
	}
	return decodeManifest(data, "s3://"+s.Loc.Bucket+"/"+k)
}

// latest reads the latest pointer; nil, nil when nothing was pushed yet.
func (s *Store) latest(ctx context.Context) (*Latest, error) {
	k := key(s.Loc, "", LatestName)
	data, err := s.get(ctx, k, 1<<16)
	if err != nil || data == nil {
		return nil, err
	}
	return decodeLatest(data, "s3://"+s.Loc.Bucket+"/"+k)
}

func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var nk *types.NoSuchKey
	var nf *types.NotFound
	var nb *types.NoSuchBucket
	if errors.As(err, &nk) || errors.As(err, &nf) || errors.As(err, &nb) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NotFound", "NoSuchKey", "NoSuchBucket", "404":
			return true
		}
	}
	return false
}
