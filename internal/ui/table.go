package ui

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Table writes rows in aligned columns (for status and similar listings),
// kubectl style: upper-case headers, two spaces between columns, "-" for
// an empty cell so every row has the same number of fields for awk.
type Table struct {
	tw   *tabwriter.Writer
	cols int
	err  error
}

// NewTable starts a table on w with the given column headers.
func NewTable(w io.Writer, headers ...string) *Table {
	t := &Table{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0), cols: len(headers)}
	upper := make([]string, len(headers))
	for i, h := range headers {
		upper[i] = strings.ToUpper(h)
	}
	t.Row(upper...)
	return t
}

// Row adds one row. Missing cells are shown as "-", extra cells are kept;
// tabs and line breaks inside a cell become spaces so they cannot break
// the alignment.
func (t *Table) Row(cells ...string) {
	if t.err != nil {
		return
	}
	n := max(len(cells), t.cols)
	out := make([]string, n)
	for i := range n {
		c := ""
		if i < len(cells) {
			c = strings.Join(strings.Fields(clean(cells[i])), " ")
		}
		if c == "" {
			c = "-"
		}
		out[i] = c
	}
	if _, err := io.WriteString(t.tw, strings.Join(out, "\t")+"\n"); err != nil {
		t.err = fmt.Errorf("write table: %w", err)
	}
}

// Flush writes the aligned table out; call it once after the last row.
func (t *Table) Flush() error {
	if t.err != nil {
		return t.err
	}
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}
