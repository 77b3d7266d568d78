package ipxe

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lkfleet/lkfleet/internal/atomicfile"
	"github.com/lkfleet/lkfleet/pkg/spec"
)

// FileName is the name WriteScripts gives a device's script.
func FileName(d spec.Device) string { return d.Hostname + ".ipxe" }

// WriteScripts writes every rendered device's script to dir/<hostname>.ipxe
// (creating dir) and returns the paths written, in device order. This is
// how users who serve scripts from ipxe_script_url get the exact bytes the
// plan checks for. Each file is written to a temporary name and renamed,
// so a web server never serves half a script.
func WriteScripts(dir string, devs []spec.Device) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("write scripts: %w", err)
	}
	paths := make([]string, 0, len(devs))
	for _, d := range devs {
		if d.Script == "" {
			return paths, fmt.Errorf("write script of device %q (slot %s): not rendered", d.Hostname, d.Slot)
		}
		// Hostnames are validated DNS labels; refuse anything that could
		// leave dir all the same.
		if d.Hostname == "" || strings.ContainsAny(d.Hostname, `/\`) || d.Hostname == "." || d.Hostname == ".." {
			return paths, fmt.Errorf("write script of device %q (slot %s): hostname is not a file name", d.Hostname, d.Slot)
		}
		p := filepath.Join(dir, FileName(d))
		if err := atomicfile.Write(p, 0o644, func(w io.Writer) error { _, err := io.WriteString(w, d.Script); return err }); err != nil {
			return paths, fmt.Errorf("write script of device %q (slot %s): %w", d.Hostname, d.Slot, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
