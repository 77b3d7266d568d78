package spec

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// LoadOptions carries what Load may not take from the process itself.
type LoadOptions struct {
	// Getenv expands ${VAR} references; nil means an empty environment.
	Getenv func(string) string
	// Project, when set (the --project flag), replaces the file's project;
	// the file's project value is then not expanded at all, so an unset
	// ${PACKET_PROJECT_ID} there is no error.
	Project string
	// ReadFile reads an ipxe_template given as a file path (the caller
	// resolves it relative to the fleet file). nil: templates are inline.
	ReadFile func(path string) ([]byte, error)
	// IdentityOnly reads apiVersion, fleet and project and nothing else:
	// images, defaults, groups and rollout are neither validated nor
	// ${VAR}-expanded, and the Fleet has none. destroy needs only the
	// fleet's identity, so it still works once the image URLs or the
	// groups' variables are gone.
	IdentityOnly bool
}

// DefaultMaxInFlight is rollout.max_in_flight when the file omits it.
const DefaultMaxInFlight = 10

// EnvProject is read for the project when the file has no project key.
const EnvProject = "PACKET_PROJECT_ID"

var (
	reName      = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)
	reUUID      = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	reImageKey  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	reImageName = regexp.MustCompile(`^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$`)
	reZone      = regexp.MustCompile(`^[a-z][a-z0-9]{1,15}$`)
	reMachine   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	rePlainKey  = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	reYAMLLine  = regexp.MustCompile(`^line (\d+): `)
)

var (
	billings = []string{"hourly", "daily", "monthly", "yearly"}
	arches   = []string{ArchX86, ArchARM}

	topKeys     = []string{"apiVersion", "fleet", "project", "images", "defaults", "groups", "rollout"}
	imageKeys   = []string{"base_url", "name", "arch", "cmdline", "ipxe_template", "store", "mirrors", "release"}
	groupKeys   = []string{"name", "image", "count", "zone", "zones", "machine", "billing", "always_pxe", "tags", "hostname", "kernel_args", "ipxe_template", "userdata", "ipxe_script_url", "network_type", "vlans"}
	defaultKeys = groupKeys[1:] // every group key but the name
	rolloutKeys = []string{"waves", "max_in_flight", "max_unavailable", "rebuild", "canary", "max_failures", "create_batch"}
)

// Load decodes and validates a fleet file. name is used in messages and
// as Fleet.File. On any problem it returns a nil Fleet and Errors holding
// every problem found, in file order.
func Load(name string, data []byte, opts LoadOptions) (*Fleet, error) {
	if name == "" {
		name = "<input>"
	}
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	l := &loader{file: name, opts: opts}
	var f *Fleet
	if root := l.parse(data); root != nil {
		f = l.fleet(root)
	}
	if len(l.errs) > 0 {
		return nil, l.errs.sortAndDedupe()
	}
	return f, nil
}

// ---- the document ----

func (l *loader) fleet(root *yaml.Node) *Fleet {
	if r := resolve(root); r.Kind != yaml.MappingNode {
		l.add(root, "", "a fleet file must be a mapping with apiVersion, fleet, images and groups, not %s", describe(r))
		return nil
	}
	top := l.fieldsOf(root, "", topKeys)
	f := &Fleet{File: l.file}

	av := l.str(top, "apiVersion", false)
	switch {
	case !av.set:
		l.add(top.node, "apiVersion", "missing; want apiVersion: %s", APIVersion)
	case av.ok() && av.v != APIVersion:
		l.add(av.n, av.path, "unsupported version %q; want %s", av.v, APIVersion)
	}

	name := l.match(l.str(top, "fleet", true), reName, "fleet name (want 1-40 of a-z, 0-9 and -)")
	if !name.set {
		l.add(top.node, "fleet", "missing; every fleet needs a name ([a-z0-9-]{1,40})")
	}
	f.Name = name.v
	f.Project = l.project(top)
	if l.opts.IdentityOnly {
		return f
	}

	images, scripts := l.images(top)
	f.Images = images

	var defaults *groupSpec
	if e, ok := top.m["defaults"]; ok {
		defaults = l.groupSpec(e.v, "defaults", defaultKeys)
	} else {
		defaults = &groupSpec{}
	}

	gnode, gpath, gok := top.lookup("groups")
	if !gok {
		l.add(gnode, gpath, "missing; list the fleet's groups (groups: [] for none)")
	}
	// Groups with a name and a known image are expanded even when other
	// values were bad (those fall back to defaults), so hostname and
	// template problems are reported alongside the rest.
	var clean []int
	var srcs []groupSources
	if gok {
		r := resolve(gnode)
		if r.Kind != yaml.SequenceNode {
			l.add(gnode, gpath, "must be a list of groups, not %s", describe(r))
		} else {
			firstLine := map[string]int{}
			for i, n := range r.Content {
				path := gpath + "[" + strconv.Itoa(i) + "]"
				if k := resolve(n).Kind; k != yaml.MappingNode {
					l.add(n, path, "a group must be a mapping with at least name and image, not %s", describe(resolve(n)))
					f.Groups = append(f.Groups, Group{})
					srcs = append(srcs, groupSources{})
					continue
				}
				gs := l.groupSpec(n, path, groupKeys)
				g, src, expandable := l.resolveGroup(gs, defaults, f.Images)
				if g.Name != "" {
					if line, dup := firstLine[g.Name]; dup {
						l.add(gs.name.n, gs.name.path, "duplicate group name %q (first on line %d)", g.Name, line)
						expandable = false
					} else {
						firstLine[g.Name] = gs.name.n.Line
					}
				}
				f.Groups = append(f.Groups, g)
				srcs = append(srcs, src)
				if expandable {
					clean = append(clean, i)
				}
			}
		}
	}

	f.Rollout = l.rollout(top, f.Groups)
	l.expandChecks(f, clean, srcs, scripts)
	return f
}

func (l *loader) project(top fields) string {
	if l.opts.Project != "" {
		if !reUUID.MatchString(l.opts.Project) {
			l.errs = append(l.errs, &Error{File: l.file, Path: "project", Msg: fmt.Sprintf("--project %q is not a project UUID", l.opts.Project)})
		}
		return l.opts.Project
	}
	p := l.str(top, "project", false)
	if p.ok() {
		v, missing, err := expandEnv(p.v, l.opts.Getenv)
		switch {
		case err != nil:
			l.add(p.n, p.path, "%v", err)
			p.bad = true
		case len(missing) > 0:
			for _, name := range missing {
				l.add(p.n, p.path, "environment variable %s is not set (set it, or pass --project)", name)
			}
			p.bad = true
		}
		p.v = v
	}
	if !p.set {
		if v := l.opts.Getenv(EnvProject); v != "" {
			if !reUUID.MatchString(v) {
				l.add(top.node, "project", "%s %q is not a project UUID", EnvProject, v)
			}
			return v
		}
		l.add(p.n, "project", "missing; give the project UUID here, set %s, or pass --project", EnvProject)
		return ""
	}
	if p.ok() && !reUUID.MatchString(p.v) {
		l.add(p.n, p.path, "%q is not a project UUID (like 3f0c8a1e-6d2b-4c59-9a8e-1b2c3d4e5f60)", p.v)
	}
	return p.v
}

// images decodes the images in file order, and returns where each
// image's ipxe_template was given, for template problems found later.
func (l *loader) images(top fields) ([]Image, map[string]sval) {
	src := map[string]sval{}
	e, ok := top.m["images"]
	if !ok {
		return nil, src
	}
	var out []Image
	for _, ie := range l.entries(e.v, "images") {
		path := joinPath("images", ie.key)
		if !reImageKey.MatchString(ie.key) {
			l.add(ie.k, path, "image key %q: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", ie.key)
			continue
		}
		if r := resolve(ie.v); r.Kind != yaml.MappingNode {
			l.add(ie.v, path, "an image must be a mapping with at least base_url, not %s", describe(r))
			continue
		}
		fs := l.fieldsOf(ie.v, path, imageKeys)
		im := Image{Key: ie.key, Name: ie.key}
		base := l.str(fs, "base_url", true)
		im.Store = l.imageStore(fs, base) // store, mirrors, release: store.go
		switch {
		case !base.set && im.Store != nil:
			im.BaseURL = im.Store.BaseURL()
		case !base.set:
			l.add(fs.node, base.path, "missing; where the image's kernel, initrd and cmdline are served")
		case base.ok():
			b := strings.TrimRight(base.v, "/")
			u, err := url.Parse(b)
			switch {
			case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
				l.add(base.n, base.path, "%q is not an absolute http or https URL", base.v)
			case u.RawQuery != "" || u.Fragment != "":
				l.add(base.n, base.path, "%q must not have a query or fragment: file names are appended to it", base.v)
			}
			im.BaseURL = b
		}
		if n := l.match(l.str(fs, "name", true), reImageName, "image file prefix (letters, digits, '.', '_', '-', '/')"); n.ok() {
			im.Name = n.v
		}
		im.Arch = l.oneOf(l.str(fs, "arch", true), arches).v
		cmd := l.str(fs, "cmdline", false)
		if cmd.ok() && strings.ContainsAny(cmd.v, "\r\n") {
			l.add(cmd.n, cmd.path, "must be a single line")
		}
		im.Cmdline = strings.TrimSpace(cmd.v)
		script := l.ipxeTemplate(fs)
		if script.ok() {
			im.IPXETemplate = script.v
		}
		out = append(out, im)
		src[ie.key] = script
	}
	return out, src
}
