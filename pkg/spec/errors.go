package spec

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one problem in a fleet file, located by line, column and the
// key path of the value at fault (for example groups[1].image).
type Error struct {
	File string
	// Line and Col are 1-based; Line 0 means the problem has no position
	// (for example a --project value that is not a UUID).
	Line, Col int
	// Path is the key path (images.sshd.base_url, groups[0].zones[1]); it
	// is empty for YAML syntax errors.
	Path string
	Msg  string
}

// Error formats the problem as FILE:LINE:COL: PATH: message, the form
// editors and CI logs recognise.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, max(e.Col, 1))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a fleet file, in file order. Load
// returns it so callers can print each problem on its own line.
type Errors []*Error

// Error prints one problem per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sortAndDedupe orders problems by position so output reads top to bottom,
// and drops exact repeats (a defaults value inherited by several groups is
// reported once).
func (es Errors) sortAndDedupe() Errors {
	seen := make(map[Error]bool, len(es))
	out := es[:0]
	for _, e := range es {
		if !seen[*e] {
			seen[*e] = true
			out = append(out, e)
		}
	}
	// Stable: problems at one position keep the order they were found in.
	slices.SortStableFunc(out, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	return out
}

// Suggest returns the candidate closest to s when it is close enough to
// be a plausible typo, else "". It is the tree's one "did you mean": the
// fleet file's keys and values here, the catalogue's machine types and
// zones in pkg/planner.
func Suggest(s string, candidates []string) string {
	best, bestD := "", -1
	ls := strings.ToLower(s)
	for _, c := range candidates {
		if c == s {
			continue
		}
		d := EditDistance(ls, strings.ToLower(c))
		limit := max(1, min(len(s), len(c))/3)
		// On a tie, prefer the candidate of the same length (zonse: zones,
		// not zone).
		if d <= limit && (bestD < 0 || d < bestD || (d == bestD && len(c) == len(s) && len(best) != len(s))) {
			best, bestD = c, d
		}
	}
	return best
}

// didYouMean formats a suggestion clause, or "" when nothing is close.
func didYouMean(s string, candidates []string) string {
	if m := Suggest(s, candidates); m != "" {
		return fmt.Sprintf("; did you mean %q?", m)
	}
	return ""
}

// EditDistance is the optimal string alignment distance (Levenshtein plus
// adjacent transpositions), over bytes: how "did you mean" suggestions find
// the nearest valid name. Inputs longer than 64 bytes are
// compared by length only: no key or name is that long, and it keeps the
// cost bounded on hostile input.
func EditDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	// Three rows suffice for the transposition rule.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
