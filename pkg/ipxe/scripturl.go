package ipxe

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// ScriptMismatchError says that a script URL serves something other than
// the script lkfleet rendered for the devices that boot from it.
type ScriptMismatchError struct {
	URL       string
	Hostnames []string // devices booting from URL, sorted
	// Diff is a unified diff from the served script to the rendered one.
	Diff string
}

func (e *ScriptMismatchError) Error() string {
	return fmt.Sprintf("GET %s: served script differs from the one rendered for %s (write it with 'lkfleet render --out'):\n%s",
		e.URL, strings.Join(e.Hostnames, ", "), strings.TrimRight(e.Diff, "\n"))
}

// CheckScriptURLs GETs the ipxe_script_url of every device that has one and
// checks that it serves exactly the rendered script: otherwise the machine
// would boot something the plan never showed. Devices sharing a URL must
// render the same script. Every problem (unreachable URL, HTTP error,
// mismatch with its diff) is reported in one *ArtifactsError.
func CheckScriptURLs(ctx context.Context, client *http.Client, devs []spec.Device) error {
	want := map[string]string{}
	hosts := map[string][]string{}
	var conflicts []error
	for _, d := range devs {
		if d.IPXEScriptURL == "" {
			continue
		}
		u := d.IPXEScriptURL
		if s, ok := want[u]; ok && s != d.Script {
			conflicts = append(conflicts, fmt.Errorf("script URL %s is shared by %s and %q (slot %s), whose rendered scripts differ",
				u, strings.Join(hosts[u], ", "), d.Hostname, d.Slot))
			continue
		}
		want[u] = d.Script
		hosts[u] = append(hosts[u], d.Hostname)
	}
	if len(conflicts) > 0 {
		return &ArtifactsError{What: "check script URLs", Total: len(want), Failures: conflicts}
	}
	urls := make([]string, 0, len(want))
	for u := range want {
		urls = append(urls, u)
	}
	_, err := forEachURL(ctx, "check script URLs", urls, func(ctx context.Context, u string) (string, error) {
		body, err := get(ctx, client, u)
		if err != nil {
			return "", err
		}
		if body != want[u] {
			h := slices.Clone(hosts[u])
			slices.Sort(h)
			return "", &ScriptMismatchError{
				URL:       u,
				Hostnames: h,
				Diff:      Diff("served "+u, "rendered", body, want[u]),
			}
		}
		return "", nil
	})
	return err
}

// diffContext is the number of unchanged lines shown around a change.
const diffContext = 3

// maxDiffCells bounds the LCS table; larger inputs are shown as a whole
// replacement, which is still a correct diff.
const maxDiffCells = 4 << 20

type diffOp struct {
	kind byte // ' ', '-', '+'
	text string
}

// Diff returns a unified diff (as diff -u prints it) turning a into b, or ""
// when they are equal.
func Diff(aName, bName, a, b string) string {
	if a == b {
		return ""
	}
	al, bl := splitLines(a), splitLines(b)
	ops := diffLines(al, bl)

	var out strings.Builder
	fmt.Fprintf(&out, "--- %s\n+++ %s\n", aName, bName)
	// Walk the ops, emitting hunks of changes with their context.
	ai, bi := 0, 0 // lines of a and b consumed before ops[i]
	pos := make([][2]int, len(ops)+1)
	for i, op := range ops {
		pos[i] = [2]int{ai, bi}
		if op.kind != '+' {
			ai++
		}
		if op.kind != '-' {
			bi++
		}
	}
	pos[len(ops)] = [2]int{ai, bi}
	for i := 0; i < len(ops); {
		if ops[i].kind == ' ' {
			i++
			continue
		}
		start := max(i-diffContext, 0)
		end := i
		// Extend the hunk while the next change is within 2*context lines.
		for j := i; j < len(ops); j++ {
			if ops[j].kind != ' ' {
				end = j + 1
			} else if j-end >= 2*diffContext {
				break
			}
		}
		end = min(end+diffContext, len(ops))
		na, nb := 0, 0
		for _, op := range ops[start:end] {
			if op.kind != '+' {
				na++
			}
			if op.kind != '-' {
				nb++
			}
		}
		fmt.Fprintf(&out, "@@ -%s +%s @@\n", hunkRange(pos[start][0], na), hunkRange(pos[start][1], nb))
		for _, op := range ops[start:end] {
			out.WriteByte(op.kind)
			if text, ok := strings.CutSuffix(op.text, "\n"); ok {
				out.WriteString(text + "\n")
			} else {
				out.WriteString(op.text + "\n\\ No newline at end of file\n")
			}
		}
		i = end
	}
	return out.String()
}

// hunkRange formats a hunk's start,count the way diff -u does.
func hunkRange(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	if n == 1 {
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}

// splitLines splits s into lines that keep their "\n", so a missing final
// newline shows up as a difference.
func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// diffLines computes a shortest edit script by longest common subsequence.
// Scripts are a handful of lines, so the quadratic table is cheap.
func diffLines(a, b []string) []diffOp {
	// Strip the common prefix and suffix first: usually one line differs.
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var ops []diffOp
	for _, l := range a[:pre] {
		ops = append(ops, diffOp{' ', l})
	}
	ma, mb := a[pre:len(a)-suf], b[pre:len(b)-suf]
	if (len(ma)+1)*(len(mb)+1) > maxDiffCells {
		for _, l := range ma {
			ops = append(ops, diffOp{'-', l})
		}
		for _, l := range mb {
			ops = append(ops, diffOp{'+', l})
		}
	} else {
		ops = append(ops, lcsOps(ma, mb)...)
	}
	for _, l := range a[len(a)-suf:] {
		ops = append(ops, diffOp{' ', l})
	}
	return ops
}

func lcsOps(a, b []string) []diffOp {
	n, m := len(a), len(b)
	// l[i][j] = LCS length of a[i:] and b[j:].
	l := make([][]int, n+1)
	for i := range l {
		l[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				l[i][j] = l[i+1][j+1] + 1
			} else {
				l[i][j] = max(l[i+1][j], l[i][j+1])
			}
		}
	}
	var ops []diffOp
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			ops = append(ops, diffOp{' ', a[i]})
			i++
			j++
		case j == m || (i < n && l[i+1][j] >= l[i][j+1]):
			ops = append(ops, diffOp{'-', a[i]})
			i++
		default:
			ops = append(ops, diffOp{'+', b[j]})
			j++
		}
	}
	return ops
}
