package spec

// This file resolves groups: a group as written, merged with defaults,
// validated into a Group.

import (
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// groupSpec is a group (or the defaults block) as written, before defaults
// apply.
type groupSpec struct {
	node                                                        *yaml.Node
	path                                                        string
	name, image, zone, machine, billing                         sval
	count                                                       ival
	zones, tags                                                 lval
	alwaysPXE                                                   bval
	hostname, kernelArgs, ipxeTemplate, userdata, ipxeScriptURL sval
	hw                                                          hardwareSpec // hardware.go
	net                                                         netSpec      // network.go
}

func (l *loader) groupSpec(n *yaml.Node, path string, known []string) *groupSpec {
	fs := l.fieldsOf(n, path, known)
	g := &groupSpec{node: n, path: path}
	g.name = l.match(l.str(fs, "name", true), reName, "group name (want 1-40 of a-z, 0-9 and -)")
	g.image = l.str(fs, "image", true)
	g.count = l.int(fs, "count", 0, MaxCount)
	g.zone = l.match(l.str(fs, "zone", true), reZone, "zone (a facility or metro code like ams1 or am)")
	g.zones = l.strList(fs, "zones", true, "; write zones: [ams1, ...] or zone: ams1")
	if g.zones.ok() {
		if len(g.zones.v) == 0 {
			l.add(g.zones.n, g.zones.path, "must list at least one zone (use count: 0 to scale a group to zero)")
			g.zones.bad = true
		}
		seen := map[string]bool{}
		for i, z := range g.zones.v {
			p := g.zones.path + "[" + strconv.Itoa(i) + "]"
			switch {
			case !reZone.MatchString(z):
				l.add(g.zones.ns[i], p, "%q is not a valid zone (a facility or metro code like ams1 or am)", z)
				g.zones.bad = true
			case seen[z]:
				l.add(g.zones.ns[i], p, "zone %q is listed twice", z)
				g.zones.bad = true
			}
			seen[z] = true
		}
	}
	if g.zone.set && g.zones.set {
		l.add(fs.m["zones"].k, g.zones.path, "give either zone or zones, not both")
		g.zones.bad = true
	}
	g.machine = l.match(l.str(fs, "machine", true), reMachine, "machine type (a plan slug like baremetal_0 or c3.small.x86)")
	g.billing = l.oneOf(l.str(fs, "billing", true), billings)
	g.alwaysPXE = l.bool(fs, "always_pxe")
	g.tags = l.strList(fs, "tags", true, "")
	for i, t := range g.tags.v {
		p := g.tags.path + "[" + strconv.Itoa(i) + "]"
		switch {
		case strings.TrimSpace(t) == "":
			l.add(g.tags.ns[i], p, "tags must not be empty")
			g.tags.bad = true
		case strings.HasPrefix(strings.ToLower(t), TagPrefix):
			l.add(g.tags.ns[i], p, "tag %q: the %s prefix is reserved for the tags lkfleet sets itself", t, TagPrefix)
			g.tags.bad = true
		}
	}
	g.hostname = l.template(l.text(fs, "hostname"))
	g.kernelArgs = l.template(l.text(fs, "kernel_args"))
	g.ipxeTemplate = l.ipxeTemplate(fs)
	g.userdata = l.text(fs, "userdata")
	g.ipxeScriptURL = l.template(l.text(fs, "ipxe_script_url"))
	g.hw = l.hardwareSpec(fs)
	g.net = l.networkSpec(fs)
	return g
}

// source is where a resolved group value came from: the group, the
// defaults block, or (for built-in defaults) the group's own mapping.
type source struct {
	n    *yaml.Node
	path string
}

type groupSources map[string]source

func pickS(g, d sval) sval {
	if g.set {
		return g
	}
	if d.set {
		return d
	}
	return g
}

// resolveGroup applies the defaults block and built-in defaults. Values
// that were reported as bad are left at their defaults; expandable is
// false when the group cannot be expanded at all (no name, no image).
func (l *loader) resolveGroup(g, d *groupSpec, images []Image) (Group, groupSources, bool) {
	src := groupSources{}
	out := Group{Name: g.name.v}
	if !g.name.set && !g.name.bad {
		l.add(g.name.n, g.name.path, "missing; every group needs a name ([a-z0-9-]{1,40})")
	}
	if !g.name.ok() {
		out.Name = ""
	}

	var known bool
	out.Image, known = l.groupImage(g, d, images, src)
	expandable := out.Name != "" && known

	switch {
	case g.count.set:
		out.Count, src["count"] = g.count.v, source{g.count.n, g.count.path}
	case d.count.set:
		out.Count, src["count"] = d.count.v, source{d.count.n, d.count.path}
	default:
		out.Count, src["count"] = 1, source{g.node, g.path + ".count"}
	}

	out.Zones = groupZones(g, d, src)

	out.Machine = cmpOr(pickS(g.machine, d.machine).v, DefaultMach)
	out.Billing = cmpOr(pickS(g.billing, d.billing).v, DefaultBill)
	out.AlwaysPXE = true
	if g.alwaysPXE.set {
		out.AlwaysPXE = g.alwaysPXE.v || g.alwaysPXE.bad
	} else if d.alwaysPXE.set {
		out.AlwaysPXE = d.alwaysPXE.v || d.alwaysPXE.bad
	}
	src["always_pxe"] = source{g.node, g.path + ".always_pxe"}
	if g.alwaysPXE.set {
		src["always_pxe"] = source{g.alwaysPXE.n, g.alwaysPXE.path}
	} else if d.alwaysPXE.set {
		src["always_pxe"] = source{d.alwaysPXE.n, d.alwaysPXE.path}
	}

	// Tags add up: the defaults' tags and the group's, sorted, once each.
	tags := append(slices.Clone(d.tags.v), g.tags.v...)
	slices.Sort(tags)
	out.Tags = slices.Compact(tags)

	out.Hardware = l.checkHardware(resolveHardware(g.hw, d.hw), out, g.hw, d.hw)
	groupTemplates(g, d, &out, src)
	if out.Hostname == "" {
		out.Hostname = DefaultHost
	}
	out.NetworkType, out.VLANs = l.resolveNetwork(g.net, d.net)
	if ud := pickS(g.userdata, d.userdata); ud.ok() && out.IPXEScriptURL == "" {
		l.add(ud.n, ud.path, "userdata needs ipxe_script_url: without it the userdata carries the iPXE script")
	}
	return out, src, expandable
}

// groupImage resolves the group's image key; known is false when it names
// no image.
func (l *loader) groupImage(g, d *groupSpec, images []Image, src groupSources) (key string, known bool) {
	img := pickS(g.image, d.image)
	src["image"] = source{img.n, img.path}
	keys := make([]string, len(images))
	for i, im := range images {
		keys[i] = im.Key
	}
	switch {
	case !img.set:
		l.add(img.n, img.path, "missing; name one of the images (known: %s)", strings.Join(keys, ", "))
	case img.ok() && !slices.Contains(keys, img.v):
		if len(keys) == 0 {
			l.add(img.n, img.path, "unknown image %q (no images are defined)", img.v)
		} else {
			l.add(img.n, img.path, "unknown image %q (known: %s)%s", img.v, strings.Join(keys, ", "), didYouMean(img.v, keys))
		}
	}
	return img.v, img.ok() && slices.Contains(keys, img.v)
}

// groupZones resolves the group's zones. The location is one unit: a
// group's zone or zones replaces the defaults' zone or zones entirely.
func groupZones(g, d *groupSpec, src groupSources) []string {
	loc := g
	if !g.zone.set && !g.zones.set {
		loc = d
	}
	var zones []string
	switch {
	case loc.zone.set:
		zones, src["zones"] = []string{loc.zone.v}, source{loc.zone.n, loc.zone.path}
	case loc.zones.set:
		zones, src["zones"] = slices.Clone(loc.zones.v), source{loc.zones.n, loc.zones.path}
	default:
		zones, src["zones"] = []string{DefaultZone}, source{g.node, g.path + ".zone"}
	}
	if loc.zone.bad || loc.zones.bad {
		return nil
	}
	return zones
}

// groupTemplates resolves the templated text keys, the group's value over
// the defaults'.
func groupTemplates(g, d *groupSpec, out *Group, src groupSources) {
	for _, t := range []struct {
		key  string
		g, d sval
		dst  *string
	}{
		{"hostname", g.hostname, d.hostname, &out.Hostname},
		{"kernel_args", g.kernelArgs, d.kernelArgs, &out.KernelArgs},
		{"ipxe_template", g.ipxeTemplate, d.ipxeTemplate, &out.IPXETemplate},
		{"userdata", g.userdata, d.userdata, &out.Userdata},
		{"ipxe_script_url", g.ipxeScriptURL, d.ipxeScriptURL, &out.IPXEScriptURL},
	} {
		v := pickS(t.g, t.d)
		src[t.key] = source{v.n, v.path}
		if !v.set {
			src[t.key] = source{g.node, g.path + "." + t.key}
		}
		if v.ok() {
			*t.dst = v.v
		}
	}
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// expandChecks renders every device of the groups that decoded cleanly, so
// hostname clashes, bad DNS labels and failing templates are reported at
// the key they came from.
func (l *loader) expandChecks(f *Fleet, clean []int, srcs []groupSources, scripts map[string]sval) {
	sub := *f
	sub.Groups = make([]Group, len(clean))
	for i, gi := range clean {
		sub.Groups[i] = f.Groups[gi]
	}
	_, probs := expandFleet(&sub)
	for _, p := range probs {
		if p.group < 0 {
			l.add(nil, "groups", "%s", p.msg)
			continue
		}
		gi := clean[p.group]
		s := srcs[gi][p.field]
		if p.fromImage {
			sc := scripts[f.Groups[gi].Image]
			s = source{sc.n, sc.path}
		}
		if s.n == nil {
			s.path = "groups[" + strconv.Itoa(gi) + "]." + p.field
		}
		l.add(s.n, s.path, "%s", p.msg)
	}
}
