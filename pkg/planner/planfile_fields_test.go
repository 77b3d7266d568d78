package planner

import (
	"bytes"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/lkfleet/lkfleet/pkg/spec"
)

// fill sets every field of the struct v points to a non-zero value.
func fill(t *testing.T, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch f.Kind() {
		case reflect.String:
			f.SetString("v-" + name)
		case reflect.Int:
			f.SetInt(int64(i + 1))
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Float64:
			f.SetFloat(float64(i) + 0.5)
		case reflect.Slice:
			f.Set(reflect.MakeSlice(f.Type(), 1, 1))
			if e := f.Index(0); e.Kind() == reflect.String {
				e.SetString("v-" + name)
			} else {
				fill(t, e)
			}
		case reflect.Pointer:
			f.Set(reflect.New(f.Type().Elem()))
			fill(t, f.Elem())
		case reflect.Struct:
			if f.Type() == reflect.TypeFor[time.Time]() {
				f.Set(reflect.ValueOf(time.Date(2026, 11, 25, 21, 40, i, 0, time.UTC)))
			} else {
				fill(t, f)
			}
		default:
			t.Fatalf("fill: field %s has kind %s; teach fill about it", name, f.Kind())
		}
	}
}

// TestSavedPlanKeepsEveryField saves and loads a plan whose desired and
// live devices have every field set: a field added to spec.Device,
// spec.Image or Live that the plan file does not carry fails here instead
// of being silently dropped from saved plans.
func TestSavedPlanKeepsEveryField(t *testing.T) {
	var d spec.Device
	fill(t, reflect.ValueOf(&d).Elem())
	d.Slot, d.Wave = "web/ams1/1", 0
	var l Live
	fill(t, reflect.ValueOf(&l).Elem())
	l.Tags = ownTags("lab", "web/ams1/2", "0123456789ab")
	p := Plan{Fleet: "lab", LiveFingerprint: "sha256:l", FleetFingerprint: "sha256:f",
		Rollout: spec.Rollout{Waves: [][]string{{"ams1"}}},
		Changes: []Change{
			{Action: Create, Wave: 0, Desired: &d, Reasons: []string{"r"}},
			{Action: Delete, Wave: 0, Live: &l, Reasons: []string{"r"}},
		}}
	var buf bytes.Buffer
	if err := Save(&buf, p); err != nil {
		t.Fatal(err)
	}
	got, err := Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got.Changes[0].Desired, d) {
		t.Errorf("desired device after a round trip:\n got %+v\nwant %+v", *got.Changes[0].Desired, d)
	}
	if !reflect.DeepEqual(*got.Changes[1].Live, l) {
		t.Errorf("live device after a round trip:\n got %+v\nwant %+v", *got.Changes[1].Live, l)
	}
	for i, c := range got.Changes {
		if c.Slot() != p.Changes[i].Slot() || c.Hostname() != p.Changes[i].Hostname() || c.DeviceID() != p.Changes[i].DeviceID() {
			t.Errorf("change %s: slot %q hostname %q id %q after a round trip", strconv.Itoa(i), c.Slot(), c.Hostname(), c.DeviceID())
		}
	}
}
