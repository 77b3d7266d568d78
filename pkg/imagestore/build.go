package imagestore

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// ReleaseIDLength is the number of hex digits of a release id: 64 bits of
// SHA-256, far beyond what any fleet's history can collide on.
const ReleaseIDLength = 16

var reRelease = regexp.MustCompile(`^[0-9a-f]{16}$`)

// ValidReleaseID reports whether s has the form of a release id.
func ValidReleaseID(s string) bool { return reRelease.MatchString(s) }

// Suffixes are the file names linuxkit writes after NAME, in upload order.
var Suffixes = []string{"-kernel", "-initrd.img", "-cmdline"}

// Artifact is one file of a build, hashed.
type Artifact struct {
	Name   string // object name: NAME-kernel, ...
	Path   string // local path it was read from
	Size   int64
	SHA256 string // hex
}

// Build is a local kernel+initrd build ready to push.
type Build struct {
	Name    string // the image's file prefix
	Source  string // the directory it was read from (absolute)
	Files   []Artifact
	Release string // content-derived id
}

// ReadBuild hashes NAME-kernel, NAME-initrd.img and NAME-cmdline in dir.
// Every missing or unreadable file is named in the one error returned.
func ReadBuild(dir, name string) (*Build, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("read build %s: %w", dir, err)
	}
	b := &Build{Name: name, Source: abs}
	var errs []error
	for _, suf := range Suffixes {
		a, err := hashFile(filepath.Join(abs, name+suf))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		a.Name = name + suf
		b.Files = append(b.Files, a)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("read build %q from %s (want the files `linuxkit build -format kernel+initrd` writes): %w", name, abs, errors.Join(errs...))
	}
	b.Release = ReleaseID(b.Files)
	return b, nil
}

func hashFile(path string) (Artifact, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Artifact{}, fmt.Errorf("%s is missing", filepath.Base(path))
	}
	if err != nil {
		return Artifact{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Artifact{}, err
	}
	if !st.Mode().IsRegular() {
		return Artifact{}, fmt.Errorf("%s is not a regular file", path)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return Artifact{}, fmt.Errorf("read %s: %w", path, err)
	}
	return Artifact{Path: path, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// ReleaseID derives a release id from the files' names, sizes and digests
// (in the given order): the same build, wherever it was built, always
// lands in the same release.
func ReleaseID(files []Artifact) string {
	h := sha256.New()
	for _, a := range files {
		// Length-prefixed so no two lists collide by concatenation.
		fmt.Fprintf(h, "%d:%s %s %s\n", len(a.Name), a.Name, strconv.FormatInt(a.Size, 10), a.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:ReleaseIDLength]
}
