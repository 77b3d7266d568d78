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
	devs := make([]Device, 0, total)
	hostSlot := make(map[string]string, total)
	for gi, g := range f.Groups {
		im, ok := images[g.Image]
		if !ok {
			ps.add(problem{group: gi, field: "image", msg: fmt.Sprintf("unknown image %q", g.Image)})
			continue
		}
		devs = expandGroup(f, gi, im, devs, hostSlot, &ps)
	}
	slices.SortFunc(devs, func(a, b Device) int { return compareSlot(a.Group, a.Zone, a.Index, b.Group, b.Zone, b.Index) })
	return devs, ps.done()
}

// expandGroup appends the group's devices to devs; hostSlot maps each
// hostname taken so far to its slot, fleet-wide.
func expandGroup(f *Fleet, gi int, im Image, devs []Device, hostSlot map[string]string, ps *problems) []Device {
	g := f.Groups[gi]
	hostText := g.Hostname
	if hostText == "" {
		hostText = DefaultHost
	}
	hostT, err := ParseTemplate("hostname", hostText)
	if err != nil {
		ps.add(problem{group: gi, field: "hostname", msg: err.Error()})
		return devs
	}
	var urlT *template.Template
	if g.IPXEScriptURL != "" {
		if urlT, err = ParseTemplate("ipxe_script_url", g.IPXEScriptURL); err != nil {
			ps.add(problem{group: gi, field: "ipxe_script_url", msg: err.Error()})
			return devs
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
				Slot: SlotName(g.Name, zone, idx), Fleet: f.Name, Group: g.Name, Zone: zone, Index: idx,
				Wave: waveOf(f.Rollout, zone), Machine: g.Machine, Billing: g.Billing, AlwaysPXE: g.AlwaysPXE,
				Arch: arch, Image: im, UserTags: slices.Clone(g.Tags), KernelArgs: g.KernelArgs,
				IPXETemplate: script, Userdata: g.Userdata,
				NetworkType: g.NetworkType, VLANs: slices.Clone(g.VLANs),
			}
			if !hostBroken {
				h, err := execTemplate(hostT, hostText, HostnameData{Fleet: f.Name, Group: g.Name, Zone: zone, Index: idx, Machine: g.Machine})
				switch {
				case err != nil:
					// The same template fails the same way for the next device.
					ps.add(problem{group: gi, field: "hostname", msg: err.Error()})
					hostBroken = true
				case !reLabel.MatchString(h):
					ps.add(problem{group: gi, field: "hostname", msg: fmt.Sprintf("renders %q for slot %s, which is not a DNS label "+
						"(lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)", h, d.Slot)})
				case hostSlot[h] != "":
					ps.add(problem{group: gi, field: "hostname", msg: fmt.Sprintf("renders %q for slot %s, already the hostname of slot %s; hostnames must be unique across the fleet", h, d.Slot, hostSlot[h])})
				default:
					hostSlot[h] = d.Slot
				}
				d.Hostname = h
			}
			if urlT != nil && !urlBroken {
				u, err := execTemplate(urlT, g.IPXEScriptURL, d.URLData())
				if err == nil {
					err = checkHTTPURL(u)
				}
				if err != nil {
					ps.add(problem{group: gi, field: "ipxe_script_url", msg: err.Error()})
					urlBroken = true
				}
				d.IPXEScriptURL = u
			}
			devs = append(devs, d)
			if sample == nil {
				sample = &devs[len(devs)-1]
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
		sample = &Device{Slot: SlotName(g.Name, zone, 1), Fleet: f.Name, Group: g.Name, Zone: zone, Index: 1,
			Machine: g.Machine, Arch: arch, Image: im, Hostname: g.Name + "-" + zone + "-1"}
	}
	data := sample.TemplateData(im.Cmdline)
	if g.KernelArgs != "" {
		out, err := RenderTemplate("kernel_args", g.KernelArgs, data)
		if err == nil && strings.ContainsAny(out, "\r\n") {
			err = errors.New("renders to more than one line; kernel arguments must be a single line")
		}
		if err != nil {
			ps.add(problem{group: gi, field: "kernel_args", msg: err.Error()})
		}
	}
	if script != "" {
		if _, err := RenderTemplate("ipxe_template", script, data); err != nil {
			ps.add(problem{group: gi, field: "ipxe_template", fromImage: fromImage, msg: err.Error()})
		}
	}
	return devs
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

// CompareSlots orders slot names ("group/zone/index") the way Expand sorts
// devices: by group, then zone, in natural order (digit runs compare by
// value, so ams2 < ams10), then by index as a number. Names that are not
// slots sort after slots, by plain string order.
func CompareSlots(a, b string) int {
	ga, za, ia, okA := ParseSlot(a)
	gb, zb, ib, okB := ParseSlot(b)
	switch {
	case okA && okB:
		return compareSlot(ga, za, ia, gb, zb, ib)
	case okA:
		return -1
	case okB:
		return 1
	}
	return strings.Compare(a, b)
}

func compareSlot(ga, za string, ia int, gb, zb string, ib int) int {
	return cmp.Or(NaturalCompare(ga, gb), NaturalCompare(za, zb), cmp.Compare(ia, ib))
}

// ParseSlot splits "group/zone/index"; ok is false when s is not a slot.
func ParseSlot(s string) (group, zone string, index int, ok bool) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return "", "", 0, false
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n < 1 || strconv.Itoa(n) != parts[2] {
		return "", "", 0, false
	}
	return parts[0], parts[1], n, true
}

// NaturalCompare compares strings with runs of ASCII digits compared by
// numeric value (web2 < web10); ties in value (a01 vs a1) fall back to
// plain byte order so the order stays total.
func NaturalCompare(a, b string) int {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		ca, cb := a[i], b[j]
		if isDigit(ca) && isDigit(cb) {
			si, sj := i, j
			for i < len(a) && isDigit(a[i]) {
				i++
			}
			for j < len(b) && isDigit(b[j]) {
				j++
			}
			na := strings.TrimLeft(a[si:i], "0")
			nb := strings.TrimLeft(b[sj:j], "0")
			if c := cmp.Or(cmp.Compare(len(na), len(nb)), strings.Compare(na, nb)); c != 0 {
				return c
			}
			continue
		}
		if ca != cb {
			return cmp.Compare(ca, cb)
		}
		i++
		j++
	}
	if c := cmp.Compare(len(a)-i, len(b)-j); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
