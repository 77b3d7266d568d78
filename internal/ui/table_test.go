package ui

import (
	"bytes"
	"strings"
	"testing"
)

func TestTableAligns(t *testing.T) {
	var out bytes.Buffer
	tb := NewTable(&out, "slot", "hostname", "id", "state")
	tb.Row("web/ams1/1", "web-ams1-1", "3f2a9c1e-0000", "active")
	tb.Row("db/ewr1/10", "database-ewr1-10", "", "provisioning")
	tb.Row("x/y/1", "tab\there", "id\nsplit") // short row, messy cells
	if err := tb.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"SLOT        HOSTNAME          ID             STATE\n" +
		"web/ams1/1  web-ams1-1        3f2a9c1e-0000  active\n" +
		"db/ewr1/10  database-ewr1-10  -              provisioning\n" +
		"x/y/1       tab here          id; split      -\n"
	if got := out.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if strings.HasSuffix(l, " ") {
			t.Errorf("trailing space in %q", l)
		}
	}
}

func TestTableWriteError(t *testing.T) {
	tb := NewTable(errWriter{}, "a", "b")
	tb.Row("1", "2")
	if err := tb.Flush(); err == nil || !strings.Contains(err.Error(), "write table") {
		t.Errorf("Flush error = %v", err)
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, bytes.ErrTooLarge }
