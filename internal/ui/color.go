package ui

// IsColor reports whether output to a stream should carry ANSI colours:
// only on a terminal, never with NO_COLOR set to anything (no-color.org),
// and never on TERM=dumb, which cannot show them.
func IsColor(getenv func(string) string, tty bool) bool {
	if !tty {
		return false
	}
	if getenv == nil {
		return true
	}
	if _, set := lookup(getenv, "NO_COLOR"); set {
		return false
	}
	return getenv("TERM") != "dumb"
}

// lookup treats a non-empty value as set: a getenv function cannot tell
// an empty variable from a missing one, and no-color.org asks that an
// empty NO_COLOR be ignored anyway.
func lookup(getenv func(string) string, key string) (string, bool) {
	v := getenv(key)
	return v, v != ""
}

// palette wraps text in SGR sequences, or returns it unchanged when
// colours are off, so callers never branch on the mode.
type palette struct{ on bool }

func (p palette) wrap(code, s string) string {
	if !p.on || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (p palette) red(s string) string    { return p.wrap("31", s) }
func (p palette) green(s string) string  { return p.wrap("32", s) }
func (p palette) yellow(s string) string { return p.wrap("33", s) }
func (p palette) bold(s string) string   { return p.wrap("1", s) }
func (p palette) dim(s string) string    { return p.wrap("2", s) }
