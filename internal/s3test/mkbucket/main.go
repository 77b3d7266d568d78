// Command mkbucket creates publicly readable buckets on a local
// S3-compatible server, for the image store demo (scripts/demo-push.sh):
// lkfleet itself never creates buckets. Credentials come from the standard
// AWS environment variables.
//
//	go run ./internal/s3test/mkbucket -endpoint http://127.0.0.1:7070 BUCKET...
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func main() {
	endpoint := flag.String("endpoint", "http://127.0.0.1:7070", "S3 endpoint")
	flag.Parse()
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fail(err)
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(*endpoint)
		o.UsePathStyle = true
	})
	for _, b := range flag.Args() {
		if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			fail(fmt.Errorf("create bucket %s: %w", b, err))
		}
		policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":["s3:GetObject"],"Resource":["arn:aws:s3:::%s/*"]}]}`, b)
		if _, err := c.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(b), Policy: aws.String(policy)}); err != nil {
			fail(fmt.Errorf("make bucket %s public: %w", b, err))
		}
		fmt.Printf("bucket %s created, readable by anyone\n", b)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mkbucket:", err)
	os.Exit(1)
}
