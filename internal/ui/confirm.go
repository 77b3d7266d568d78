package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Confirm asks question on out and reads one line from in. Like
// Terraform, only the exact answer "yes" approves: "y", "YES" or an empty
// line decline, so a stray keypress never starts an apply. End of input
// declines without an error. Confirm reads byte by byte so it consumes
// nothing from in beyond the answer's line.
func Confirm(in io.Reader, out io.Writer, question string) (bool, error) {
	return ConfirmContext(context.Background(), in, out, question)
}

// ConfirmContext is Confirm that gives up as soon as ctx is done (Ctrl-C
// at the prompt), returning ctx's error: a read from a terminal cannot be
// interrupted, so the answer is read on another goroutine, which is left
// blocked on in. Callers end the process soon after, so nothing is read
// from in later by anyone else.
func ConfirmContext(ctx context.Context, in io.Reader, out io.Writer, question string) (bool, error) {
	if _, err := fmt.Fprintf(out, "%s\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ", strings.TrimRight(question, "\n")); err != nil {
		return false, fmt.Errorf("ask for confirmation: %w", err)
	}
	type reply struct {
		answer string
		eof    bool
		err    error
	}
	done := make(chan reply, 1)
	go func() {
		a, eof, err := readAnswer(in)
		done <- reply{a, eof, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return false, r.err
		}
		nl := "\n"
		if r.eof {
			// A closed input (Ctrl-D) is a refusal; say so on a fresh line.
			nl = "\n\n"
		}
		if _, err := io.WriteString(out, nl); err != nil {
			return false, fmt.Errorf("ask for confirmation: %w", err)
		}
		return strings.TrimSpace(r.answer) == "yes", nil
	case <-ctx.Done():
		_, _ = io.WriteString(out, "\n\n")
		return false, ctx.Err()
	}
}

// readAnswer reads the answer's line. It never writes, so that a reader
// left behind by ConfirmContext cannot print over what follows.
func readAnswer(in io.Reader) (answer string, eof bool, err error) {
	var line []byte
	buf := make([]byte, 1)
	for {
		n, err := in.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				return string(line), false, nil
			}
			line = append(line, buf[0])
			if len(line) > 1024 {
				return "", false, errors.New("read confirmation: answer too long")
			}
		}
		if errors.Is(err, io.EOF) {
			return string(line), true, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("read confirmation: %w", err)
		}
	}
}
