package s3test

import (
	"context"
	"fmt"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Client is an S3 client of the server's root account, for test setup
// and for tampering with objects the way another writer would.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.URL),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
}

// CreateBucket creates a bucket whose objects anyone may read, as an image
// store must be for devices to boot from it.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	c := s.Client()
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::%s/*"]}]}`, name)
	if _, err := c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: &name, Policy: &policy}); err != nil {
		t.Fatalf("make bucket %s public: %v", name, err)
	}
}

// PublicURL is the anonymous path-style URL of bucket/prefix.
func (s *Server) PublicURL(bucket, prefix string) string {
	if prefix == "" {
		return s.URL + "/" + bucket
	}
	return s.URL + "/" + bucket + "/" + prefix
}
