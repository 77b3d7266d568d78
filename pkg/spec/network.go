package spec

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/lkfleet/lkfleet/pkg/network"
)

// VLAN names one virtual network of a group: by VLAN number (VXLAN) or by
// description. lkfleet finds it in the device's metro, or creates it there.
type VLAN struct {
	VXLAN       int    // 2..3999, 0 when named by description
	Description string // "" when named by number
}

// String renders the VLAN as a plan shows it: 1001 or "lab-net".
func (v VLAN) String() string {
	if v.VXLAN != 0 {
		return strconv.Itoa(v.VXLAN)
	}
	return strconv.Quote(v.Description)
}

// netSpec is a group's network keys as decoded.
type netSpec struct {
	typ   sval
	vlans []VLAN
	vnode *yaml.Node
	vpath string
	vset  bool
	vbad  bool
}

// networkSpec decodes network_type and vlans of one group or defaults.
func (l *loader) networkSpec(fs fields) netSpec {
	ns := netSpec{typ: l.oneOf(l.str(fs, "network_type", true), network.Names())}
	n, path, ok := fs.lookup("vlans")
	ns.vnode, ns.vpath = n, path
	if !ok {
		return ns
	}
	ns.vset = true
	r := resolve(n)
	if r.Kind != yaml.SequenceNode {
		l.add(n, path, "must be a list of VLAN numbers (2-3999) or descriptions, not %s", describe(r))
		ns.vbad = true
		return ns
	}
	seen := map[VLAN]bool{}
	for i, e := range r.Content {
		p := path + "[" + strconv.Itoa(i) + "]"
		er := resolve(e)
		var v VLAN
		switch {
		case er.Kind == yaml.ScalarNode && er.ShortTag() == "!!int":
			x, err := strconv.Atoi(er.Value)
			if err != nil || x < 2 || x > 3999 {
				l.add(e, p, "VLAN %s is out of range 2..3999", er.Value)
				ns.vbad = true
				continue
			}
			v.VXLAN = x
		default:
			s, good := l.scalarString(e, p, true)
			if !good {
				ns.vbad = true
				continue
			}
			if strings.TrimSpace(s) == "" {
				l.add(e, p, "a VLAN description must not be empty")
				ns.vbad = true
				continue
			}
			v.Description = s
		}
		if seen[v] {
			l.add(e, p, "VLAN %s is listed twice", v)
			ns.vbad = true
			continue
		}
		seen[v] = true
		ns.vlans = append(ns.vlans, v)
	}
	return ns
}

// resolveNetwork picks a group's network type and VLANs (the group's own,
// else the defaults'; VLANs replace, they do not add up) and checks that
// they fit together.
func (l *loader) resolveNetwork(g, d netSpec) (string, []VLAN) {
	typ := pickS(g.typ, d.typ)
	vl := g
	if !g.vset {
		vl = d
	}
	if typ.bad || vl.vbad {
		return "", nil
	}
	if !vl.vset || len(vl.vlans) == 0 {
		return typ.v, nil
	}
	switch t, _ := network.Parse(typ.v); {
	case !typ.set:
		l.add(vl.vnode, vl.vpath, "vlans needs a network_type that carries VLANs (%s)", strings.Join(vlanTypes(), ", "))
		return "", nil
	case !t.TakesVLANs():
		l.add(vl.vnode, vl.vpath, "network_type %s carries no VLANs; use hybrid-bonded for layer 3 with VLANs", t)
		return typ.v, nil
	}
	return typ.v, vl.vlans
}

func vlanTypes() []string {
	var out []string
	for _, t := range network.Types {
		if t.TakesVLANs() {
			out = append(out, string(t))
		}
	}
	return out
}
