// Package atomicfile writes files so that a reader sees the old content or
// the new, never half of it: a web server serving a rendered script, or
// apply reading a saved plan. It is the tree's one atomic file write.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write writes path by calling write on a temporary file in the same
// directory, setting perm, and renaming it over path. On any error the
// temporary file is removed and path is left as it was.
func Write(path string, perm os.FileMode, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	err = write(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, perm)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	return err
}
