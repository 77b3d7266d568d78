package spec

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"text/template"
)

// HostnameData is what a hostname template sees.
type HostnameData struct {
	Fleet   string
	Group   string
	Zone    string
	Index   int // from 1
	Machine string
}

// TemplateImage is the image as templates see it (.Image.Name ...).
type TemplateImage struct {
	Key     string
	Name    string
	BaseURL string
}

// ScriptURLData is what an ipxe_script_url template sees: every per-device
// value known before the script itself is rendered.
type ScriptURLData struct {
	Hostname string
	Fleet    string
	Group    string
	Zone     string
	Index    int
	Slot     string
	Machine  string
	Arch     string
	Image    TemplateImage
}

// TemplateData is what kernel_args and ipxe_template templates see.
// Cmdline is the image's kernel command line (given or fetched) without
// the kernel_args.
type TemplateData struct {
	Hostname  string
	Fleet     string
	Group     string
	Zone      string
	Index     int
	Slot      string
	Machine   string
	Arch      string
	Image     TemplateImage
	Cmdline   string
	KernelURL string
	InitrdURL string
}

// URLData returns the fields an ipxe_script_url template may use.
func (d Device) URLData() ScriptURLData {
	return ScriptURLData{
		Hostname: d.Hostname, Fleet: d.Fleet, Group: d.Group, Zone: d.Zone,
		Index: d.Index, Slot: d.Slot, Machine: d.Machine, Arch: d.Arch,
		Image: TemplateImage{Key: d.Image.Key, Name: d.Image.Name, BaseURL: d.Image.BaseURL},
	}
}

// TemplateData returns the fields kernel_args and ipxe_template templates
// see for this device, given the image's resolved kernel command line.
func (d Device) TemplateData(cmdline string) TemplateData {
	u := d.URLData()
	return TemplateData{
		Hostname: u.Hostname, Fleet: u.Fleet, Group: u.Group, Zone: u.Zone,
		Index: u.Index, Slot: u.Slot, Machine: u.Machine, Arch: u.Arch, Image: u.Image,
		Cmdline: cmdline, KernelURL: d.Image.KernelURL(), InitrdURL: d.Image.InitrdURL(),
	}
}

// maxRendered bounds a rendered template: iPXE scripts are small, and a
// runaway {{range}} must fail instead of filling memory.
const maxRendered = 1 << 20

// ParseTemplate parses a fleet file template. Missing map keys are errors,
// and messages drop text/template's internal prefixes.
func ParseTemplate(name, text string) (*template.Template, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, cleanTemplateError(name, text, err, nil)
	}
	if err := checkBudget(t, text); err != nil { // template_budget.go
		return nil, err
	}
	return t, nil
}

// RenderTemplate parses text and executes it with data (one of the *Data
// types of this package), returning a message that names an unknown field
// and the fields that exist.
func RenderTemplate(name, text string, data any) (string, error) {
	t, err := ParseTemplate(name, text)
	if err != nil {
		return "", err
	}
	return execTemplate(t, text, data)
}

func execTemplate(t *template.Template, text string, data any) (string, error) {
	w := &limitedWriter{max: maxRendered}
	if err := t.Execute(w, data); err != nil {
		if errors.Is(err, errTooLong) {
			return "", fmt.Errorf("renders to more than %d bytes", maxRendered)
		}
		return "", cleanTemplateError(t.Name(), text, err, data)
	}
	return w.b.String(), nil
}

var errTooLong = errors.New("template output too long")

type limitedWriter struct {
	b   strings.Builder
	max int
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > w.max {
		return 0, errTooLong
	}
	return w.b.Write(p)
}

var (
	// template: NAME:LINE: msg   or   template: NAME:LINE:COL: msg
	tmplPrefix = regexp.MustCompile(`^template: [^:]*:(\d+)(?::\d+)?: `)
	execPrefix = regexp.MustCompile(`^executing "[^"]*" at <([^>]*)>: `)
	unknownFld = regexp.MustCompile(`can't evaluate field (\w+) in type`)
)

// cleanTemplateError rewrites text/template's messages into ones a fleet
// file author can act on: the template line only for multi-line templates,
// and for an unknown field the list of fields that exist.
func cleanTemplateError(name, text string, err error, data any) error {
	msg := err.Error()
	line := ""
	if m := tmplPrefix.FindStringSubmatch(msg); m != nil {
		msg = msg[len(m[0]):]
		if strings.Contains(strings.TrimRight(text, "\n"), "\n") {
			line = "line " + m[1] + ": "
		}
	}
	at := ""
	if m := execPrefix.FindStringSubmatch(msg); m != nil {
		msg = msg[len(m[0]):]
		at = m[1]
	}
	if m := unknownFld.FindStringSubmatch(msg); m != nil && data != nil {
		fields := fieldNames(reflect.TypeOf(data))
		field := m[1]
		if strings.HasPrefix(at, ".") && strings.HasSuffix(at, "."+field) {
			field = at[1:]
		}
		hint := ""
		if m := Suggest(field, fields); m != "" {
			hint = fmt.Sprintf("; did you mean .%s?", m)
		}
		return fmt.Errorf("template: %sunknown field .%s%s (available: .%s)", line, field,
			hint, strings.Join(fields, " ."))
	}
	if at != "" {
		return fmt.Errorf("template: %sat <%s>: %s", line, at, msg)
	}
	return fmt.Errorf("template: %s%s", line, msg)
}

func fieldNames(t reflect.Type) []string {
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct {
			for _, sub := range fieldNames(f.Type) {
				out = append(out, f.Name+"."+sub)
			}
			continue
		}
		out = append(out, f.Name)
	}
	return out
}
