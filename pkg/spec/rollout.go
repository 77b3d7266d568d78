package spec

// This file decodes the rollout block.

import (
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

func (l *loader) rollout(top fields, groups []Group) Rollout {
	r := Rollout{MaxInFlight: DefaultMaxInFlight, MaxUnavailable: Budget{Count: 1}}
	var zones []string
	for _, g := range groups {
		for _, z := range g.Zones {
			if !slices.Contains(zones, z) {
				zones = append(zones, z)
			}
		}
	}
	slices.SortFunc(zones, NaturalCompare)

	var fs fields
	if e, ok := top.m["rollout"]; ok {
		fs = l.fieldsOf(e.v, "rollout", rolloutKeys)
	} else {
		fs = fields{node: top.node, path: "rollout", m: map[string]entry{}}
	}

	r.Waves = l.waves(fs, zones)

	if v := l.int(fs, "max_in_flight", 1, 10000); v.ok() {
		r.MaxInFlight = v.v
	}
	r.MaxUnavailable = l.budget(fs, "max_unavailable", r.MaxUnavailable)
	if v := l.int(fs, "canary", 0, MaxDevices); v.ok() {
		r.Canary = v.v
	}
	if v := l.int(fs, "max_failures", 0, MaxDevices); v.ok() {
		r.MaxFailures = v.v
	}

	if v := l.int(fs, "create_batch", 0, MaxCreateBatch); v.ok() {
		r.CreateBatch = v.v
	}

	r.Rebuild = l.rebuild(fs, groups)
	return r
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// budget decodes a count ≥ 1 or a percentage "N%" (1..100).
func (l *loader) budget(fs fields, key string, def Budget) Budget {
	n, path, ok := fs.lookup(key)
	if !ok {
		return def
	}
	r := resolve(n)
	if r.Kind == yaml.ScalarNode && r.ShortTag() == "!!int" {
		if v := l.int(fs, key, 1, MaxDevices); v.ok() {
			return Budget{Count: v.v}
		}
		return def
	}
	s, good := l.scalarText(n, path, `a count or a percentage like "25%"`)
	if !good {
		return def
	}
	if r.ShortTag() != "!!str" {
		l.add(n, path, `must be a count ≥ 1 or a percentage like "25%%", not %s`, describe(r))
		return def
	}
	s = strings.TrimSpace(s)
	if p, isPct := strings.CutSuffix(s, "%"); isPct {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v < 1 || v > 100 {
			l.add(n, path, "%q is not a percentage between 1%% and 100%%", s)
			return def
		}
		return Budget{Percent: v}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		l.add(n, path, `%q is not a count ≥ 1 or a percentage like "25%%"`, s)
		return def
	}
	return Budget{Count: v}
}

// waves decodes rollout.waves over the fleet's zones (in natural order):
// every listed zone once, unlisted zones in a last wave of their own.
func (l *loader) waves(fs fields, zones []string) [][]string {
	var out [][]string
	placed := map[string]string{} // zone → path of the wave entry
	if n, path, ok := fs.lookup("waves"); ok {
		wr := resolve(n)
		if wr.Kind != yaml.SequenceNode {
			l.add(n, path, "must be a list of zone lists, like [[ams1], [ewr1, sjc1]], not %s", describe(wr))
		} else {
			for i, wn := range wr.Content {
				wpath := path + "[" + strconv.Itoa(i) + "]"
				w := resolve(wn)
				if w.Kind != yaml.SequenceNode {
					l.add(wn, wpath, "a wave must be a list of zones, like [ams1, ewr1], not %s", describe(w))
					continue
				}
				if len(w.Content) == 0 {
					l.add(wn, wpath, "a wave must list at least one zone")
					continue
				}
				var wave []string
				for j, zn := range w.Content {
					zpath := wpath + "[" + strconv.Itoa(j) + "]"
					z, good := l.scalarString(zn, zpath, true)
					switch {
					case !good:
					case !slices.Contains(zones, z):
						l.add(zn, zpath, "zone %q is not used by any group%s (zones: %s)", z, didYouMean(z, zones), strings.Join(zones, ", "))
					case placed[z] != "":
						l.add(zn, zpath, "zone %q is already in %s; a zone belongs to one wave", z, placed[z])
					default:
						placed[z] = wpath
						wave = append(wave, z)
					}
				}
				if len(wave) > 0 {
					out = append(out, wave)
				}
			}
		}
	}
	var rest []string
	for _, z := range zones {
		if placed[z] == "" {
			rest = append(rest, z)
		}
	}
	if len(rest) > 0 {
		out = append(out, rest)
	}

	return out
}

// rebuild decodes rollout.rebuild: a strategy of the table, one the
// groups' always_pxe allows; absent, the default for the groups.
func (l *loader) rebuild(fs fields, groups []Group) Strategy {
	var noPXE []string
	for _, g := range groups {
		if !g.AlwaysPXE && g.Name != "" {
			noPXE = append(noPXE, g.Name)
		}
	}
	rb := l.oneOf(l.str(fs, "rebuild", true), Strategies())
	if rb.ok() {
		s := Strategy(rb.v)
		if s.NeedsAlwaysPXE() && len(noPXE) > 0 {
			who := "group " + quoteList(noPXE) + " sets"
			if len(noPXE) > 1 {
				who = "groups " + quoteList(noPXE) + " set"
			}
			l.add(rb.n, rb.path, "rebuild %q needs always_pxe: true (a plain reboot boots the installed image), but %s always_pxe: false; use reinstall or recreate",
				rb.v, who)
		}
		return s
	}
	return DefaultStrategy(len(noPXE) == 0)
}
