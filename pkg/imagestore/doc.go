// Package imagestore publishes LinuxKit kernel+initrd builds to
// S3-compatible object storage as content-addressed releases, and checks
// them from the side devices see.
//
// A release is the three files `linuxkit build -format kernel+initrd`
// writes (NAME-kernel, NAME-initrd.img, NAME-cmdline). Its id is derived
// from the files' names and SHA-256 digests, so the same build always has
// the same id and pushing it twice uploads nothing. Objects go under
// PREFIX/RELEASE/, and PREFIX/RELEASE/manifest.json (sizes, digests,
// ETags, source, time) is written only after every object is in place:
// a release whose manifest exists is complete, and a release without one
// does not exist for any reader. PREFIX/latest names the newest pushed
// release and is written after the manifest.
//
// Writes go through the S3 API (AWS SDK for Go v2, credentials from the
// standard AWS chain only). Reads that decide what devices boot — the
// latest pointer, manifests, HEADs of kernels and initrds — go through
// the public HTTP URL the devices themselves fetch from, so a plan needs
// no storage credentials and checks exactly what will be booted.
package imagestore
