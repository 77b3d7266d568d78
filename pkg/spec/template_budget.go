package spec

import (
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
)

// MaxTemplateIterations bounds the iterations one execution of a fleet
// file template may make, all nested ranges multiplied.
//
// text/template has no step limit and cannot be interrupted: the output
// cap (maxRendered) stops a template that writes too much, but
// {{range 1000000000}}{{end}} writes nothing and runs for minutes, once per
// device. So the budget is checked before anything runs, on the parse
// tree: a range may only go over an integer constant, and the product of
// the constants of nested ranges (through {{template}} calls too) must stay
// within this bound. Ranging over a variable, a field or a function result
// is refused, since its count is unknown before execution (fleet templates
// see only strings and small integers, so nothing useful is lost), and so
// is a template that calls itself. Without loops and recursion, the work of
// an execution is bounded by the size of the template times this bound.
const MaxTemplateIterations = 1000

// checkBudget refuses a parsed template whose execution is not bounded by
// MaxTemplateIterations.
func checkBudget(t *template.Template, text string) error {
	b := budget{t: t, active: map[string]bool{}, lines: strings.Contains(strings.TrimRight(text, "\n"), "\n")}
	if t.Tree == nil {
		return nil
	}
	return b.walk(t.Name(), t.Tree.Root, 1)
}

type budget struct {
	t      *template.Template
	active map[string]bool // templates being walked, to find recursion
	lines  bool            // name lines in messages (multi-line templates)
}

// errorf words a refusal like the package's other template errors.
func (b *budget) errorf(line int, format string, args ...any) error {
	at := ""
	if b.lines {
		at = fmt.Sprintf("line %d: ", line)
	}
	return fmt.Errorf("template: %s%s", at, fmt.Sprintf(format, args...))
}

func (b *budget) walk(name string, n parse.Node, mult int) error {
	switch n := n.(type) {
	case nil:
		return nil
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := b.walk(name, c, mult); err != nil {
				return err
			}
		}
	case *parse.IfNode:
		return b.branches(name, n.List, n.ElseList, mult)
	case *parse.WithNode:
		return b.branches(name, n.List, n.ElseList, mult)
	case *parse.RangeNode:
		count, ok := rangeCount(n.Pipe)
		if !ok {
			return b.errorf(n.Line, "{{range %s}}: fleet templates may only range over an integer constant", n.Pipe)
		}
		if count > MaxTemplateIterations || mult*count > MaxTemplateIterations {
			return b.errorf(n.Line, "{{range %s}}: more than %d iterations in all (nested ranges multiply)", n.Pipe, MaxTemplateIterations)
		}
		return b.branches(name, n.List, n.ElseList, mult*max(count, 1))
	case *parse.TemplateNode:
		if b.active[n.Name] {
			return b.errorf(n.Line, "{{template %q}} calls itself: recursive templates are not allowed", n.Name)
		}
		called := b.t.Lookup(n.Name)
		if called == nil || called.Tree == nil {
			return nil // execution reports the missing template
		}
		b.active[n.Name] = true
		defer delete(b.active, n.Name)
		return b.walk(n.Name, called.Tree.Root, mult)
	}
	return nil
}

func (b *budget) branches(name string, list, elseList *parse.ListNode, mult int) error {
	if err := b.walk(name, list, mult); err != nil {
		return err
	}
	return b.walk(name, elseList, mult)
}

// rangeCount returns the count of a range over an integer constant
// ({{range 10}} or {{range $i := 10}}).
func rangeCount(p *parse.PipeNode) (int, bool) {
	if p == nil || len(p.Cmds) != 1 || len(p.Cmds[0].Args) != 1 {
		return 0, false
	}
	num, ok := p.Cmds[0].Args[0].(*parse.NumberNode)
	if !ok || !num.IsInt {
		return 0, false
	}
	if num.Int64 < 0 {
		return 0, true
	}
	if num.Int64 > MaxTemplateIterations {
		return MaxTemplateIterations + 1, true
	}
	return int(num.Int64), true
}
