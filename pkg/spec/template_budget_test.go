package spec

import (
	"strings"
	"testing"
)

func TestTemplateBudget(t *testing.T) {
	for _, tt := range []struct{ text, want string }{
		{`{{range 3}}x{{end}}`, "xxx"},
		{`{{range $i := 4}}{{$i}}{{end}}`, "0123"},
		{`{{range 10}}{{range 100}}{{end}}{{end}}ok`, "ok"},
		{`{{range 0}}x{{else}}none{{end}}`, "none"},
		{`{{range 1000000000}}{{end}}`, "template: {{range 1000000000}}: more than 1000 iterations in all (nested ranges multiply)"},
		{`{{range 100}}{{range 100}}{{end}}{{end}}`, "template: {{range 100}}: more than 1000 iterations in all (nested ranges multiply)"},
		{`{{if .Index}}{{range 2000}}{{end}}{{end}}`, "template: {{range 2000}}: more than 1000 iterations in all (nested ranges multiply)"},
		{`{{range .Index}}{{end}}`, "template: {{range .Index}}: fleet templates may only range over an integer constant"},
		{`{{$n := 1000000000}}{{range $n}}{{end}}`, "template: {{range $n}}: fleet templates may only range over an integer constant"},
		{"{{define \"a\"}}{{range 100}}{{template \"b\"}}{{end}}{{end}}{{define \"b\"}}{{range 100}}{{end}}{{end}}{{template \"a\"}}",
			"template: {{range 100}}: more than 1000 iterations in all (nested ranges multiply)"},
		{"#!ipxe\n{{define \"a\"}}{{template \"a\"}}{{end}}\n{{template \"a\"}}", `template: line 2: {{template "a"}} calls itself: recursive templates are not allowed`},
	} {
		got, err := RenderTemplate("hostname", tt.text, HostnameData{Index: 3})
		if err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.text, got, tt.want)
		}
	}
}

// TestHugeRangeInFleetFileIsRefused: before the budget, this hostname
// kept a CPU busy for a minute per device.
func TestHugeRangeInFleetFileIsRefused(t *testing.T) {
	src := "apiVersion: lkfleet/v1\nfleet: a\nproject: " + testUUID + "\nimages: {i: {base_url: 'http://h'}}\n" +
		"groups: [{name: g, image: i, hostname: 'x{{range 1000000000}}{{end}}-{{.Index}}', kernel_args: '{{range 999999}}{{end}}'}]\n"
	_, err := Load("x.yml", []byte(src), LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), "{{range 1000000000}}: more than 1000 iterations") || !strings.Contains(err.Error(), "{{range 999999}}") {
		t.Fatalf("huge ranges: %v", err)
	}
}
