package ui

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestConfirmAcceptsOnlyYes(t *testing.T) {
	for in, want := range map[string]bool{
		"yes\n":    true,
		"  yes \n": true,
		"yes":      true, // input closed right after the answer
		"y\n":      false,
		"YES\n":    false,
		"Yes\n":    false,
		"yess\n":   false,
		"no\n":     false,
		"\n":       false,
		"":         false,
		"\nyes\n":  false, // only the first line is the answer
	} {
		var out bytes.Buffer
		got, err := Confirm(strings.NewReader(in), &out, "Do you want to perform these actions?")
		if err != nil {
			t.Fatalf("Confirm(%q): %v", in, err)
		}
		if got != want {
			t.Errorf("Confirm(%q) = %v, want %v", in, got, want)
		}
		if !strings.HasPrefix(out.String(), "Do you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ") {
			t.Errorf("prompt = %q", out.String())
		}
	}
}

func TestConfirmReadsOnlyItsLine(t *testing.T) {
	in := strings.NewReader("yes\nrest")
	if ok, err := Confirm(in, io.Discard, "Go?"); !ok || err != nil {
		t.Fatalf("Confirm = %v, %v", ok, err)
	}
	rest, _ := io.ReadAll(in)
	if string(rest) != "rest" {
		t.Errorf("left %q unread, want %q", rest, "rest")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("device gone") }

func TestConfirmReadError(t *testing.T) {
	ok, err := Confirm(failingReader{}, io.Discard, "Go?")
	if ok || err == nil || !strings.Contains(err.Error(), "read confirmation: device gone") {
		t.Errorf("Confirm = %v, %v; want false and a read error", ok, err)
	}
}

func TestConfirmContextReturnsAtOnceWhenCancelled(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close() // lets the reader left behind finish
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		_, err := ConfirmContext(ctx, r, &out, "Go?")
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ConfirmContext after cancel = %v, want context.Canceled", err)
	}
}
