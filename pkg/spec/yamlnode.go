package spec

// This file is the generic YAML-node toolkit the loader is built on:
// parsing with positions, strict keys, typed scalars and lists, each
// problem recorded at its node as FILE:LINE:COL.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

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
		return nil
	default:
		// More than one document: which one is the fleet is a guess, so
		// this is the only problem reported (checking either document
		// would add messages that contradict this one).
		n := &extra
		if len(extra.Content) > 0 {
			n = extra.Content[0]
		}
		l.add(n, "", "a fleet file holds one YAML document; remove the second one")
		return nil
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
		if path == "" && strings.HasPrefix(e.key, "x-") {
			// Top-level x-... keys are the user's own (as in Compose): a
			// place for YAML anchors that groups merge in with <<.
			continue
		}
		if !slices.Contains(known, e.key) {
			if s := Suggest(e.key, known); s != "" {
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

func (v ival) ok() bool { return v.set && !v.bad }

func (v lval) ok() bool { return v.set && !v.bad }
