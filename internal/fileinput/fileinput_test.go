package fileinput

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "fleet.yml")
	if err := os.WriteFile(small, []byte("fleet: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := Read(small, 100); err != nil || string(b) != "fleet: x\n" {
		t.Fatalf("regular file: %q %v", b, err)
	}

	// A sparse 3 GiB file: refused from its size, nothing read.
	big := filepath.Join(dir, "big.ipxe")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(3 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = Read(big, MaxTemplateFile)
	if !errors.Is(err, ErrTooLarge) || err.Error() != big+": too large: 3.0 GiB, more than the 1.0 MiB allowed" {
		t.Errorf("3 GiB file: %v", err)
	}

	// A FIFO nobody writes to: refused, not blocked on.
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	if _, err := Read(fifo, MaxFleetFile); !errors.Is(err, ErrNotRegular) || err.Error() != fifo+": not a regular file (a FIFO)" {
		t.Errorf("FIFO: %v", err)
	}
	// /dev/zero never ends: refused before a byte is read.
	if _, err := Read("/dev/zero", MaxFleetFile); !errors.Is(err, ErrNotRegular) || err.Error() != "/dev/zero: not a regular file (a character device)" {
		t.Errorf("/dev/zero: %v", err)
	}
	if _, err := Read(dir, MaxFleetFile); !errors.Is(err, ErrNotRegular) {
		t.Errorf("directory: %v", err)
	}
	if _, err := Read(filepath.Join(dir, "missing"), MaxFleetFile); !errors.Is(err, os.ErrNotExist) || err.Error() != "open "+filepath.Join(dir, "missing")+": no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
}
