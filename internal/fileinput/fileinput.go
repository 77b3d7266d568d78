// Package fileinput reads the files lkfleet is handed (fleet files,
// ipxe_template files, saved plans) with bounds: only regular files, and
// none larger than its kind allows, checked before a byte is read. A FIFO
// would block the read forever, /dev/zero never ends, and a multi-gigabyte
// file would exhaust memory; each is refused with one clear line instead.
package fileinput

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Size limits (docs/fleet-file.md, docs/plan-format.md). They are far above
// real inputs: a fleet file of a thousand groups is ~100 KiB, an iPXE
// script a few KiB, and a saved plan 2.3-2.8 KiB per change (measured:
// 100 creates 234 KB, 100 rebuilds 277 KB).
const (
	MaxFleetFile    = 4 << 20   // 4 MiB
	MaxTemplateFile = 1 << 20   // 1 MiB, the limit of a rendered template too
	MaxPlanFile     = 256 << 20 // 256 MiB, what planner.Load accepts: ~90,000 changes
)

// Read returns the contents of the regular file at path if it holds at most
// max bytes. It does not follow the file past max even if the file grows
// while it is read.
func Read(path string, max int64) ([]byte, error) {
	// Stat before opening: opening a FIFO for reading blocks until a
	// writer appears, so its type must be known first.
	st, err := os.Stat(path)
	if err != nil {
		// Worded like the open that os.ReadFile would have reported.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, &fs.PathError{Op: "open", Path: path, Err: pe.Err}
		}
		return nil, err
	}
	if err := check(path, st, max); err != nil {
		return nil, err
	}
	// Opened non-blocking in case the path was swapped for a FIFO since
	// the Stat; the open file is checked again.
	f, err := openNonBlocking(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := check(path, st, max); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s: %w: grew past the %s allowed while being read", path, ErrTooLarge, Size(max))
	}
	return data, nil
}

func check(path string, st fs.FileInfo, max int64) error {
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: %w (%s)", path, ErrNotRegular, kind(st.Mode()))
	}
	if st.Size() > max {
		return fmt.Errorf("%s: %w: %s, more than the %s allowed", path, ErrTooLarge, Size(st.Size()), Size(max))
	}
	return nil
}

// Errors that errors.Is finds in what Read refuses.
var (
	ErrNotRegular = errors.New("not a regular file")
	ErrTooLarge   = errors.New("too large")
)

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a plain file"
}

// Size formats a byte count the way the limits are documented.
func Size(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
