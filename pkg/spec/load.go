package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
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
	rebuilds = []string{RebuildReboot, RebuildReins, RebuildRecr}

	topKeys     = []string{"apiVersion", "fleet", "project", "images", "defaults", "groups", "rollout"}
	imageKeys   = []string{"base_url", "name", "arch", "cmdline", "ipxe_template"}
	groupKeys   = []string{"name", "image", "count", "zone", "zones", "machine", "billing", "always_pxe", "tags", "hostname", "kernel_args", "ipxe_template", "userdata", "ipxe_script_url", "network_type", "vlans"}
	defaultKeys = groupKeys[1:] // every group key but the name
	rolloutKeys = []string{"waves", "max_in_flight", "max_unavailable", "rebuild", "canary", "max_failures"}
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

type loader struct {
	file       string
	opts       LoadOptions
	errs       Errors
	mergeDepth int
}

func (l *loader) add(n *yaml.Node, path, format string, args ...any) {
	e := &Error{File: l.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Col = n.Line, n.Column
	}
	l.errs = append(l.errs, e)
}

// parse reads the single YAML document. The parser is third-party code fed
// arbitrary bytes, so a panic in it becomes a reported problem.
func (l *loader) parse(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := safeDecode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			l.errs = append(l.errs, &Error{File: l.file, Line: 1, Col: 1, Msg: "the file is empty; want a fleet file starting with apiVersion: " + APIVersion})
		} else {
			l.syntax(data, err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := safeDecode(dec, &extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		l.syntax(data, err)
	default:
		n := &extra
		if len(extra.Content) > 0 {
			n = extra.Content[0]
		}
		l.add(n, "", "a fleet file holds one YAML document; remove the second one")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		l.errs = append(l.errs, &Error{File: l.file, Line: 1, Col: 1, Msg: "the file is empty; want a fleet file starting with apiVersion: " + APIVersion})
		return nil
	}
	return doc.Content[0]
}

func safeDecode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: cannot parse this input (%v)", r)
		}
	}()
	return dec.Decode(n)
}

// syntax reports a YAML parse error. The parser names only a line, and
// often the line where the enclosing block starts rather than the one at
// fault, so the line is narrowed to the first line whose inclusion makes
// the input fail to parse. The column is always 1.
func (l *loader) syntax(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := reYAMLLine.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
			line = n
		}
		msg = msg[len(m[0]):]
	}
	line = faultLine(data, line)
	l.errs = append(l.errs, &Error{File: l.file, Line: line, Col: 1, Msg: "YAML syntax error: " + msg})
}

// faultLine binary-searches the shortest prefix of whole lines, starting
// at the reported line, that no longer parses. The reported line is kept
// when the search finds nothing better (an error that needs the whole
// input to show).
func faultLine(data []byte, reported int) int {
	var ends []int // ends[i] is the offset just past line i+1
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ends = append(ends, len(data))
	}
	if reported < 1 || reported > len(ends) || !parses(data[:ends[reported-1]]) {
		return reported
	}
	lo, hi := reported+1, len(ends) // the prefix of hi lines fails: it is the whole input
	for lo < hi {
		mid := lo + (hi-lo)/2
		if parses(data[:ends[mid-1]]) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// parses reports whether every YAML document in data parses.
func parses(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := safeDecode(dec, &n)
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// resolve follows an alias to the node it names. A dangling alias reads
// as null so callers never see nil.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode; i++ {
		if i > 8 || n.Alias == nil {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: n.Line, Column: n.Column}
		}
		n = n.Alias
	}
	if n == nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names a node's kind for "must be X, not Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "empty"
		case "!!bool":
			return "a boolean"
		case "!!int", "!!float":
			return "a number"
		case "!!str":
			return "a string"
		}
		return "a " + n.ShortTag() + " value"
	}
	return "an unsupported YAML node"
}

func joinPath(path, key string) string {
	if !rePlainKey.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

type entry struct {
	key  string
	k, v *yaml.Node
}

// fields is a decoded mapping: its node (for "missing key" positions), its
// path and its known entries by key.
type fields struct {
	node *yaml.Node
	path string
	m    map[string]entry
}

// entries lists a mapping's pairs in file order, reporting non-string and
// duplicate keys, and applying YAML merge keys (<<) with explicit keys
// winning. A null node is an empty mapping.
func (l *loader) entries(n *yaml.Node, path string) []entry {
	r := resolve(n)
	if isNull(r) {
		return nil
	}
	if r.Kind != yaml.MappingNode {
		l.add(n, path, "must be a mapping, not %s", describe(r))
		return nil
	}
	var out []entry
	seen := map[string]*yaml.Node{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(r.Content); i += 2 {
		k, v := r.Content[i], r.Content[i+1]
		kr := resolve(k)
		if kr.Kind != yaml.ScalarNode || isNull(kr) {
			l.add(k, path, "keys must be strings, not %s", describe(kr))
			continue
		}
		if kr.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if first, dup := seen[kr.Value]; dup {
			l.add(k, joinPath(path, kr.Value), "duplicate key (first given on line %d)", first.Line)
			continue
		}
		seen[kr.Value] = k
		out = append(out, entry{key: kr.Value, k: k, v: v})
	}
	if len(merges) == 0 {
		return out
	}
	if l.mergeDepth > 8 {
		l.add(n, path, "merge keys (<<) nest too deeply")
		return out
	}
	l.mergeDepth++
	defer func() { l.mergeDepth-- }()
	for _, m := range merges {
		mr := resolve(m)
		srcs := []*yaml.Node{m}
		if mr.Kind == yaml.SequenceNode {
			srcs = mr.Content
		} else if mr.Kind != yaml.MappingNode {
			l.add(m, path, "a merge key (<<) needs a mapping or a list of mappings, not %s", describe(mr))
			continue
		}
		for _, src := range srcs {
			if resolve(src).Kind != yaml.MappingNode {
				l.add(src, path, "a merge key (<<) needs a mapping or a list of mappings, not %s", describe(resolve(src)))
				continue
			}
			for _, e := range l.entries(src, path) {
				if _, explicit := seen[e.key]; !explicit {
					seen[e.key] = e.k
					out = append(out, e)
				}
			}
		}
	}
	return out
}

// fieldsOf decodes a mapping whose keys must all be known.
func (l *loader) fieldsOf(n *yaml.Node, path string, known []string) fields {
	fs := fields{node: n, path: path, m: map[string]entry{}}
	for _, e := range l.entries(n, path) {
		if !slices.Contains(known, e.key) {
			if s := suggest(e.key, known); s != "" {
				l.add(e.k, joinPath(path, e.key), "unknown key; did you mean %q?", s)
			} else {
				l.add(e.k, joinPath(path, e.key), "unknown key (known: %s)", strings.Join(known, ", "))
			}
			continue
		}
		fs.m[e.key] = e
	}
	return fs
}

// sval, ival, bval and lval are decoded values with where they came from.
// set is false when the key is absent or null; bad is true when a problem
// was already reported, so later checks stay quiet about it.
type sval struct {
	v       string
	n       *yaml.Node
	path    string
	set     bool
	bad     bool
	readErr error // ipxe_template: why it was not read as a file
}

func (s sval) ok() bool { return s.set && !s.bad }

type ival struct {
	v        int
	n        *yaml.Node
	path     string
	set, bad bool
}

type bval struct {
	v        bool
	n        *yaml.Node
	path     string
	set, bad bool
}

type lval struct {
	v        []string
	ns       []*yaml.Node
	n        *yaml.Node
	path     string
	set, bad bool
}

// lookup returns a key's value node, or ok false when absent or null.
func (fs fields) lookup(key string) (*yaml.Node, string, bool) {
	path := joinPath(fs.path, key)
	e, ok := fs.m[key]
	if !ok || isNull(resolve(e.v)) {
		if ok {
			return e.v, path, false
		}
		return fs.node, path, false
	}
	return e.v, path, true
}

// expand applies ${VAR} expansion, reporting malformed and unset names.
func (l *loader) expand(n *yaml.Node, path, s string) (string, bool) {
	out, missing, err := expandEnv(s, l.opts.Getenv)
	if err != nil {
		l.add(n, path, "%v", err)
		return "", false
	}
	for _, name := range missing {
		l.add(n, path, "environment variable %s is not set", name)
	}
	return out, len(missing) == 0
}

// scalarString decodes a string. Numbers and dates are taken as written
// (fleet: 2026 is the name "2026"); booleans and null are refused because
// they were almost certainly not meant as text.
func (l *loader) scalarString(n *yaml.Node, path string, expand bool) (string, bool) {
	r := resolve(n)
	if r.Kind != yaml.ScalarNode {
		l.add(n, path, "must be a string, not %s", describe(r))
		return "", false
	}
	switch r.ShortTag() {
	case "!!str", "!!int", "!!float", "!!timestamp":
	default:
		l.add(n, path, "must be a string, not %s (quote it)", describe(r))
		return "", false
	}
	if !expand {
		return r.Value, true
	}
	return l.expand(n, path, r.Value)
}

func (l *loader) str(fs fields, key string, expand bool) sval {
	n, path, ok := fs.lookup(key)
	if !ok {
		return sval{n: n, path: path}
	}
	v, good := l.scalarString(n, path, expand)
	return sval{v: v, n: n, path: path, set: true, bad: !good}
}

// text decodes an optional template-like string: never expanded (its $
// belong to iPXE or the shell) and unset when empty.
func (l *loader) text(fs fields, key string) sval {
	s := l.str(fs, key, false)
	if s.ok() && s.v == "" {
		s.set = false
	}
	return s
}

// scalarText returns a scalar's text after ${VAR} expansion for values
// given as strings, so count: ${N} works; typed scalars are used as is.
func (l *loader) scalarText(n *yaml.Node, path, want string) (string, bool) {
	r := resolve(n)
	if r.Kind != yaml.ScalarNode {
		l.add(n, path, "must be %s, not %s", want, describe(r))
		return "", false
	}
	if r.ShortTag() == "!!str" && strings.Contains(r.Value, "${") {
		return l.expand(n, path, r.Value)
	}
	return r.Value, true
}

func (l *loader) int(fs fields, key string, lo, hi int) ival {
	n, path, ok := fs.lookup(key)
	if !ok {
		return ival{n: n, path: path}
	}
	iv := ival{n: n, path: path, set: true, bad: true}
	r := resolve(n)
	isStr := r.Kind == yaml.ScalarNode && r.ShortTag() == "!!str"
	if r.Kind == yaml.ScalarNode && r.ShortTag() != "!!int" && !(isStr && strings.Contains(r.Value, "${")) {
		l.add(n, path, "must be an integer, not %s", quoteScalar(r))
		return iv
	}
	s, good := l.scalarText(n, path, "an integer")
	if !good {
		return iv
	}
	v, err := strconv.ParseInt(strings.TrimSpace(s), 0, 64)
	if errors.Is(err, strconv.ErrRange) {
		l.add(n, path, "%s is out of range %d..%d", strings.TrimSpace(s), lo, hi)
		return iv
	}
	if err != nil {
		l.add(n, path, "must be an integer, not %q", s)
		return iv
	}
	if v < int64(lo) || v > int64(hi) {
		l.add(n, path, "%d is out of range %d..%d", v, lo, hi)
		return iv
	}
	iv.v, iv.bad = int(v), false
	return iv
}

func (l *loader) bool(fs fields, key string) bval {
	n, path, ok := fs.lookup(key)
	if !ok {
		return bval{n: n, path: path}
	}
	bv := bval{n: n, path: path, set: true, bad: true}
	r := resolve(n)
	isStr := r.Kind == yaml.ScalarNode && r.ShortTag() == "!!str"
	if r.Kind == yaml.ScalarNode && r.ShortTag() != "!!bool" && !(isStr && strings.Contains(r.Value, "${")) {
		l.add(n, path, "must be true or false, not %s", quoteScalar(r))
		return bv
	}
	s, good := l.scalarText(n, path, "true or false")
	if !good {
		return bv
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true":
		bv.v = true
	case "false":
	default:
		l.add(n, path, "must be true or false, not %q", s)
		return bv
	}
	bv.bad = false
	return bv
}

func quoteScalar(r *yaml.Node) string {
	if r.Kind == yaml.ScalarNode && !isNull(r) {
		return strconv.Quote(r.Value)
	}
	return describe(r)
}

// strList decodes a list of strings; hint is added when a single string
// was given instead of a list.
func (l *loader) strList(fs fields, key string, expand bool, hint string) lval {
	n, path, ok := fs.lookup(key)
	if !ok {
		return lval{n: n, path: path}
	}
	lv := lval{n: n, path: path, set: true}
	r := resolve(n)
	if r.Kind != yaml.SequenceNode {
		l.add(n, path, "must be a list, not %s%s", describe(r), hint)
		lv.bad = true
		return lv
	}
	for i, e := range r.Content {
		s, good := l.scalarString(e, path+"["+strconv.Itoa(i)+"]", expand)
		if !good {
			lv.bad = true
			continue
		}
		lv.v = append(lv.v, s)
		lv.ns = append(lv.ns, e)
	}
	return lv
}

// oneOf checks an enumerated value, suggesting the nearest choice.
func (l *loader) oneOf(s sval, choices []string) sval {
	if s.ok() && !slices.Contains(choices, s.v) {
		l.add(s.n, s.path, "%q is not one of %s%s", s.v, strings.Join(choices, ", "), didYouMean(s.v, choices))
		s.bad = true
	}
	return s
}

func (l *loader) match(s sval, re *regexp.Regexp, what string) sval {
	if s.ok() && !re.MatchString(s.v) {
		l.add(s.n, s.path, "%q is not a valid %s", s.v, what)
		s.bad = true
	}
	return s
}

// template parses a template-valued key, reporting syntax errors at it.
func (l *loader) template(s sval) sval {
	if s.ok() {
		if _, err := ParseTemplate(s.path, s.v); err != nil {
			l.add(s.n, s.path, "%v", err)
			s.bad = true
		}
	}
	return s
}

// ipxeTemplate reads an ipxe_template key: a value without a newline that
// ReadFile can read is a file path, anything else is the template itself.
// Either way the script must start with #!ipxe.
func (l *loader) ipxeTemplate(fs fields) sval {
	s := l.text(fs, "ipxe_template")
	if !s.ok() {
		return s
	}
	if !strings.Contains(s.v, "\n") && l.opts.ReadFile != nil {
		data, err := l.opts.ReadFile(s.v)
		if err == nil {
			s.v = string(data)
		} else {
			s.readErr = err
		}
	}
	if !strings.HasPrefix(strings.TrimLeft(s.v, " \t\r\n"), "#!ipxe") {
		if s.readErr != nil {
			l.add(s.n, s.path, "cannot read it as a file (%v), and as an inline script it does not start with #!ipxe", s.readErr)
		} else {
			l.add(s.n, s.path, "the script must start with #!ipxe")
		}
		s.bad = true
		return s
	}
	return l.template(s)
}

// ---- the document ----

func (l *loader) fleet(root *yaml.Node) *Fleet {
	if r := resolve(root); r.Kind != yaml.MappingNode {
		l.add(root, "", "a fleet file must be a mapping with apiVersion, fleet, images and groups, not %s", describe(r))
		return nil
	}
	top := l.fieldsOf(root, "", topKeys)
	f := &Fleet{File: l.file, Dir: filepath.Dir(l.file)}

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
		switch {
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
	net                                                         netSpec // network.go
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
	out.Image = img.v
	expandable := out.Name != "" && img.ok() && slices.Contains(keys, img.v)

	switch {
	case g.count.set:
		out.Count, src["count"] = g.count.v, source{g.count.n, g.count.path}
	case d.count.set:
		out.Count, src["count"] = d.count.v, source{d.count.n, d.count.path}
	default:
		out.Count, src["count"] = 1, source{g.node, g.path + ".count"}
	}

	// The location is one unit: a group's zone or zones replaces the
	// defaults' zone or zones entirely.
	loc := g
	if !g.zone.set && !g.zones.set {
		loc = d
	}
	switch {
	case loc.zone.set:
		out.Zones, src["zones"] = []string{loc.zone.v}, source{loc.zone.n, loc.zone.path}
	case loc.zones.set:
		out.Zones, src["zones"] = slices.Clone(loc.zones.v), source{loc.zones.n, loc.zones.path}
	default:
		out.Zones, src["zones"] = []string{DefaultZone}, source{g.node, g.path + ".zone"}
	}
	if loc.zone.bad || loc.zones.bad {
		out.Zones = nil
	}

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
	if out.Hostname == "" {
		out.Hostname = DefaultHost
	}
	out.NetworkType, out.VLANs = l.resolveNetwork(g.net, d.net)
	if ud := pickS(g.userdata, d.userdata); ud.ok() && out.IPXEScriptURL == "" {
		l.add(ud.n, ud.path, "userdata needs ipxe_script_url: without it the userdata carries the iPXE script")
	}
	return out, src, expandable
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

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
					r.Waves = append(r.Waves, wave)
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
		r.Waves = append(r.Waves, rest)
	}

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

	var noPXE []string
	for _, g := range groups {
		if !g.AlwaysPXE && g.Name != "" {
			noPXE = append(noPXE, g.Name)
		}
	}
	rb := l.oneOf(l.str(fs, "rebuild", true), rebuilds)
	switch {
	case rb.ok():
		r.Rebuild = rb.v
		if rb.v == RebuildReboot && len(noPXE) > 0 {
			who := "group " + quoteList(noPXE) + " sets"
			if len(noPXE) > 1 {
				who = "groups " + quoteList(noPXE) + " set"
			}
			l.add(rb.n, rb.path, "rebuild %q needs always_pxe: true (a plain reboot boots the installed image), but %s always_pxe: false; use reinstall or recreate",
				rb.v, who)
		}
	case len(noPXE) > 0:
		r.Rebuild = RebuildReins
	default:
		r.Rebuild = RebuildReboot
	}
	return r
}

func (v ival) ok() bool { return v.set && !v.bad }

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

func (v lval) ok() bool { return v.set && !v.bad }
