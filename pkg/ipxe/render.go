// Package ipxe renders the iPXE script every device boots, and checks before
// a plan that everything those scripts point at can actually be fetched: the
// API reports a device active as soon as the script was served, so a dead
// kernel URL or a wrong console is otherwise only seen as a machine that
// never comes up.
//
// Rendering (Render) is pure. The network side (FetchCmdlines, Preflight,
// CheckScriptURLs) takes an injected *http.Client and a context.
package ipxe

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// MaxScriptSize bounds a rendered script. Userdata is small in practice, and
// a script this large is a template gone wrong (a runaway range).
const MaxScriptSize = 64 << 10

// MaxKernelArgsSize bounds a rendered kernel_args value for the same reason;
// kernels themselves accept far less (2 KiB on x86_64 and arm64).
const MaxKernelArgsSize = 4 << 10

// Magic is the first line of every iPXE script. Packet only treats userdata
// as an iPXE script when it starts with it.
const Magic = "#!ipxe"

// Render returns a copy of devs with Script and Rev filled.
//
// cmdlines maps an image key to its resolved kernel command line (as
// returned by FetchCmdlines); an image's own Cmdline wins. arches maps a
// machine slug to its architecture as the API's plan catalogue reports it
// (nil: no catalogue); it overrides the guess from the slug but never an
// architecture the image pins. Every device's errors are reported, each
// naming the device and its slot.
func Render(devs []spec.Device, cmdlines map[string]string, arches map[string]string) ([]spec.Device, error) {
	out := make([]spec.Device, len(devs))
	var errs []error
	rc := renderCache{cmdlines: map[string]string{}, scripts: map[scriptKey]string{}}
	for i, d := range devs {
		if err := renderDevice(&d, cmdlines, arches, &rc); err != nil {
			errs = append(errs, fmt.Errorf("render device %q (slot %s): %w", d.Hostname, d.Slot, err))
		}
		out[i] = d
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// renderCache keeps, for one Render, what every device of a group shares:
// the normalised cmdline of an image and the default script of an image
// and cmdline. Built once per distinct input instead of once per device
// (a fifth of a 100,000-device plan's rendering), and shared, so 100,000
// devices hold one copy of their group's script.
type renderCache struct {
	cmdlines map[string]string
	scripts  map[scriptKey]string
}

type scriptKey struct{ arch, baseURL, name, cmdline string }

func (rc *renderCache) normalized(cmdline string) string {
	n, ok := rc.cmdlines[cmdline]
	if !ok {
		n = normalizeCmdline(cmdline)
		rc.cmdlines[cmdline] = n
	}
	return n
}

func (rc *renderCache) defaultScript(k scriptKey) string {
	s, ok := rc.scripts[k]
	if !ok {
		s = DefaultScript(k.arch, k.baseURL, k.name, k.cmdline)
		rc.scripts[k] = s
	}
	return s
}

func renderDevice(d *spec.Device, cmdlines, arches map[string]string, rc *renderCache) error {
	d.Arch = resolveArch(*d, arches)

	base, ok := d.Image.Cmdline, d.Image.Cmdline != ""
	if !ok {
		base, ok = cmdlines[d.Image.Key]
	}
	if !ok {
		return fmt.Errorf("image %q has no cmdline: it is neither given nor fetched from %s", d.Image.Key, d.Image.CmdlineURL())
	}
	// Templates see spec.TemplateData, the same values spec validated
	// them against, so a field accepted there never fails here.
	data := d.TemplateData(rc.normalized(base))

	if d.KernelArgs != "" {
		args, err := execute("kernel_args", d.KernelArgs, data, MaxKernelArgsSize)
		if err != nil {
			return err
		}
		data.Cmdline = joinFields(data.Cmdline, normalizeCmdline(args))
	}

	if d.IPXETemplate == "" {
		d.Script = rc.defaultScript(scriptKey{d.Arch, d.Image.BaseURL, d.Image.Name, data.Cmdline})
	} else {
		s, err := execute("ipxe_template", d.IPXETemplate, data, MaxScriptSize)
		if err != nil {
			return err
		}
		s = tidy(s)
		if !HasMagic(s) {
			return fmt.Errorf("ipxe_template: rendered script does not start with a %q line", Magic)
		}
		d.Script = s
	}
	d.Rev = d.ComputeRev()
	return nil
}

// resolveArch picks the device's architecture: the image's, else the API
// catalogue's, else what Expand derived from the slug.
func resolveArch(d spec.Device, arches map[string]string) string {
	if a := spec.NormalizeArch(d.Image.Arch); a != "" {
		return a
	}
	if a := spec.NormalizeArch(arches[d.Machine]); a != "" {
		return a
	}
	if a := spec.NormalizeArch(d.Arch); a != "" {
		return a
	}
	return spec.ArchOfMachine(d.Machine)
}

// HasMagic reports whether script starts the way iPXE requires: "#!ipxe"
// followed by whitespace ("#!ipxe0" is not an iPXE script).
func HasMagic(script string) bool {
	rest, ok := strings.CutPrefix(script, Magic)
	return ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t' || rest[0] == '\n')
}

// DefaultScript is the script a device boots when neither its group nor its
// image gives an ipxe_template. cmdline is the full kernel command line
// (image cmdline and kernel_args); whitespace in it is collapsed.
//
// x86_64 machines get the serial console on ttyS1 (where Packet's SOS
// listens) unless the cmdline already names ttyS1: two console=ttyS1 make
// the kernel print everything twice. aarch64 machines boot through EFI,
// which needs the initrd loaded first under a name the kernel is told.
func DefaultScript(arch, baseURL, name, cmdline string) string {
	cmdline = normalizeCmdline(cmdline)
	kernel := "${base-url}/" + name + "-kernel"
	initrd := "${base-url}/" + name + "-initrd.img"
	var b strings.Builder
	b.WriteString(Magic + "\n")
	b.WriteString("dhcp\n")
	b.WriteString("set base-url " + baseURL + "\n")
	if spec.NormalizeArch(arch) == spec.ArchARM {
		b.WriteString("initrd --name initrd " + initrd + "\n")
		b.WriteString(joinFields("kernel", kernel, "initrd=initrd root=/dev/ram0 ip=dhcp nomodeset ro", cmdline) + "\n")
	} else {
		params := "ip=dhcp nomodeset ro serial"
		if !hasTTYS1Console(cmdline) {
			params += " console=ttyS1,115200"
		}
		b.WriteString(joinFields("kernel", kernel, params, cmdline) + "\n")
		b.WriteString("initrd " + initrd + "\n")
	}
	b.WriteString("boot\n")
	return b.String()
}

// hasTTYS1Console reports whether cmdline already sends a console to ttyS1
// (console=ttyS1 or console=ttyS1,<options>, but not ttyS10).
func hasTTYS1Console(cmdline string) bool {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "console="); ok {
			if v == "ttyS1" || strings.HasPrefix(v, "ttyS1,") {
				return true
			}
		}
	}
	return false
}

// normalizeCmdline collapses all whitespace, newlines included: a newline
// inside a kernel line would end the iPXE command early.
func normalizeCmdline(s string) string { return strings.Join(strings.Fields(s), " ") }

// joinFields joins the non-empty parts with one space, so an empty cmdline
// leaves no trailing space.
func joinFields(parts ...string) string {
	keep := parts[:0:0]
	for _, p := range parts {
		if p != "" {
			keep = append(keep, p)
		}
	}
	return strings.Join(keep, " ")
}

// tidy makes a custom script deterministic on the wire: no leading blank
// lines, no trailing whitespace on any line, LF line ends and exactly one
// final newline.
func tidy(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " \t\r")
	}
	s = strings.Join(lines, "\n")
	s = strings.TrimLeft(s, " \t\n")
	return strings.TrimRight(s, "\n") + "\n"
}

// execute renders one fleet file template with spec's rules (strict
// fields, bounded output, messages naming unknown fields) and bounds the
// result further to limit.
func execute(name, text string, data spec.TemplateData, limit int) (string, error) {
	out, err := spec.RenderTemplate(name, text, data)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if len(out) > limit {
		return "", fmt.Errorf("%s: rendered output exceeds %d bytes", name, limit)
	}
	return out, nil
}
