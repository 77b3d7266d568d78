package spec

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
)

// Limits that keep a typo (count: 1000000) from turning into a runaway
// expansion; real fleets are far below them.
const (
	MaxCount   = 10000  // devices per group per zone
	MaxDevices = 100000 // devices per fleet
)

// reLabel is an RFC 1123 DNS label, lowercase only so that two hostnames
// never differ by case alone.
var reLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Expand turns a fleet into its desired devices, sorted by slot (see
// CompareSlots). Script and Rev stay empty: pkg/ipxe renders them. It
// renders the hostname and ipxe_script_url templates of every device and
// checks the kernel_args and ipxe_template templates against each group's
// first device, so a Fleet built in code gets the same checks as Load.
func Expand(f *Fleet) ([]Device, error) {
	if f == nil {
		return nil, errors.New("expand fleet: no fleet")
	}
	devs, probs := expandFleet(f)
	if len(probs) == 0 {
		return devs, nil
	}
	lines := make([]string, len(probs))
	for i, p := range probs {
		where := "fleet"
		if p.group >= 0 {
			where = fmt.Sprintf("group %q", f.Groups[p.group].Name)
		}
		lines[i] = fmt.Sprintf("expand fleet %q: %s: %s: %s", f.Name, where, p.field, p.msg)
	}
	return nil, errors.New(strings.Join(lines, "\n"))
}

// problem is an expansion failure tied to a group (-1: the whole fleet)
// and the key whose value caused it; Load maps it back to a position.
type problem struct {
	group int
	field string // count, image, hostname, kernel_args, ipxe_template, ipxe_script_url
	// fromImage is true when the failing template is the image's
	// ipxe_template rather than the group's.
	fromImage bool
	msg       string
}

// maxPerField caps repeated problems of one group's key: a constant
// hostname with count 500 is one mistake, not 499.
const maxPerField = 3

type problems struct {
	list       []problem
	count      map[[2]string]int
	suppressed map[[2]string]*problem
}

func (ps *problems) add(p problem) {
	if ps.count == nil {
		ps.count = map[[2]string]int{}
		ps.suppressed = map[[2]string]*problem{}
	}
	k := [2]string{strconv.Itoa(p.group), p.field}
	ps.count[k]++
	if ps.count[k] <= maxPerField {
		ps.list = append(ps.list, p)
		return
	}
	if ps.suppressed[k] == nil {
		q := p
		ps.suppressed[k] = &q
	}
}

func (ps *problems) done() []problem {
	for k, p := range ps.suppressed {
		n := ps.count[k] - maxPerField
		p.msg = fmt.Sprintf("... and %d more like the above", n)
		ps.list = append(ps.list, *p)
	}
	slices.SortStableFunc(ps.list, func(a, b problem) int {
		return cmp.Or(cmp.Compare(a.group, b.group), strings.Compare(a.field, b.field))
	})
	return ps.list
}

func expandFleet(f *Fleet) ([]Device, []problem) {
	var ps problems
	images := make(map[string]Image, len(f.Images))
	for _, im := range f.Images {
		images[im.Key] = im
	}
	total := 0
	for gi, g := range f.Groups {
		if g.Count < 0 || g.Count > MaxCount {
			ps.add(problem{group: gi, field: "count", msg: fmt.Sprintf("%d is out of range 0..%d", g.Count, MaxCount)})
			return nil, ps.done()
		}
		total += g.Count * len(g.Zones)
		if total > MaxDevices {
			ps.add(problem{group: -1, field: "count", msg: fmt.Sprintf("the fleet expands to more than %d devices", MaxDevices)})
			return nil, ps.done()
		}
	}
	e := &expansion{f: f, devs: make([]Device, 0, total), hostSlot: make(map[string]string, total), ps: &ps}
	for gi, g := range f.Groups {
		im, ok := images[g.Image]
		if !ok {
			ps.add(problem{group: gi, field: "image", msg: fmt.Sprintf("unknown image %q", g.Image)})
			continue
		}
		e.group(gi, im)
	}
	devs := e.devs
	slices.SortFunc(devs, func(a, b Device) int {
		return Slot{a.Group, a.Zone, a.Index}.Compare(Slot{b.Group, b.Zone, b.Index})
	})
	return devs, ps.done()
}

// expansion is the state of one expansion: the devices so far, each
// hostname taken so far with its slot (fleet-wide), and the problems.
type expansion struct {
	f        *Fleet
	devs     []Device
	hostSlot map[string]string
	ps       *problems
}

// takeHostname records hostname h for slot, or the problem with it: not a
// DNS label, or another slot's already.
func (e *expansion) takeHostname(gi int, h, slot string) {
	switch {
	case !reLabel.MatchString(h):
		e.ps.add(problem{group: gi, field: "hostname", msg: fmt.Sprintf("renders %q for slot %s, which is not a DNS label "+
			"(lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)", h, slot)})
	case e.hostSlot[h] != "":
		e.ps.add(problem{group: gi, field: "hostname", msg: fmt.Sprintf("renders %q for slot %s, already the hostname of slot %s; hostnames must be unique across the fleet", h, slot, e.hostSlot[h])})
	default:
		e.hostSlot[h] = slot
	}
}

// group appends the devices of group gi, built from image im.
// hostname renders a device's hostname template. The default template
// is built directly, as text/template would print it: executing it was a
// fifth of expanding a fleet of 100,000 devices, done at load and again
// when planning (TestDefaultHostnameMatchesTemplate).
func hostname(t *template.Template, text string, data HostnameData) (string, error) {
	if text == DefaultHost {
		if h := data.Group + "-" + data.Zone + "-" + strconv.Itoa(data.Index); len(h) <= maxRendered {
			return h, nil
		}
	}
	return execTemplate(t, text, data)
}

func (e *expansion) group(gi int, im Image) {
	g := e.f.Groups[gi]
	hostText := g.Hostname
	if hostText == "" {
		hostText = DefaultHost
	}
	hostT, err := ParseTemplate("hostname", hostText)
	if err != nil {
		e.ps.add(problem{group: gi, field: "hostname", msg: err.Error()})
		return
	}
	var urlT *template.Template
	if g.IPXEScriptURL != "" {
		if urlT, err = ParseTemplate("ipxe_script_url", g.IPXEScriptURL); err != nil {
			e.ps.add(problem{group: gi, field: "ipxe_script_url", msg: err.Error()})
			return
		}
	}
	script, fromImage := g.IPXETemplate, false
	if script == "" {
		script, fromImage = im.IPXETemplate, im.IPXETemplate != ""
	}
	arch := im.Arch
	if arch == "" {
		arch = ArchOfMachine(g.Machine)
	}
	var sample *Device
	hostBroken, urlBroken := false, false
	for _, zone := range g.Zones {
		for idx := 1; idx <= g.Count; idx++ {
			d := Device{
				Slot: SlotName(g.Name, zone, idx), Fleet: e.f.Name, Group: g.Name, Zone: zone, Index: idx,
				Wave: waveOf(e.f.Rollout, zone), Machine: g.Machine, Billing: g.Billing, AlwaysPXE: g.AlwaysPXE, Hardware: g.Hardware,
				Arch: arch, Image: im, UserTags: slices.Clone(g.Tags), KernelArgs: g.KernelArgs,
				IPXETemplate: script, Userdata: g.Userdata,
				NetworkType: g.NetworkType, VLANs: slices.Clone(g.VLANs),
			}
			if !hostBroken {
				h, err := hostname(hostT, hostText, HostnameData{Fleet: e.f.Name, Group: g.Name, Zone: zone, Index: idx, Machine: g.Machine})
				if err != nil {
					// The same template fails the same way for the next device.
					e.ps.add(problem{group: gi, field: "hostname", msg: err.Error()})
					hostBroken = true
				} else {
					e.takeHostname(gi, h, d.Slot)
				}
				d.Hostname = h
			}
			if urlT != nil && !urlBroken {
				u, err := execTemplate(urlT, g.IPXEScriptURL, d.URLData())
				if err == nil {
					err = checkHTTPURL(u)
				}
				if err != nil {
					e.ps.add(problem{group: gi, field: "ipxe_script_url", msg: err.Error()})
					urlBroken = true
				}
				d.IPXEScriptURL = u
			}
			e.devs = append(e.devs, d)
			if sample == nil {
				sample = &e.devs[len(e.devs)-1]
			}
		}
	}
	if sample == nil {
		// Scaled to zero: still check the templates, against index 1 of the
		// first zone, so the file stays valid when scaled back up.
		zone := DefaultZone
		if len(g.Zones) > 0 {
			zone = g.Zones[0]
		}
		sample = &Device{Slot: SlotName(g.Name, zone, 1), Fleet: e.f.Name, Group: g.Name, Zone: zone, Index: 1,
			Machine: g.Machine, Arch: arch, Image: im, Hostname: g.Name + "-" + zone + "-1"}
	}
	data := sample.TemplateData(im.Cmdline)
	if g.KernelArgs != "" {
		out, err := RenderTemplate("kernel_args", g.KernelArgs, data)
		if err == nil && strings.ContainsAny(out, "\r\n") {
			err = errors.New("renders to more than one line; kernel arguments must be a single line")
		}
		if err != nil {
			e.ps.add(problem{group: gi, field: "kernel_args", msg: err.Error()})
		}
	}
	if script != "" {
		if _, err := RenderTemplate("ipxe_template", script, data); err != nil {
			e.ps.add(problem{group: gi, field: "ipxe_template", fromImage: fromImage, msg: err.Error()})
		}
	}
}

// waveOf is the device's wave; a zone no wave lists (possible only in a
// Fleet built in code) runs after every listed wave, as Load would order it.
func waveOf(r Rollout, zone string) int {
	if w := r.WaveOf(zone); w >= 0 {
		return w
	}
	return len(r.Waves)
}

// checkHTTPURL accepts absolute http and https URLs with a host.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http or https URL", s)
	}
	return nil
}
