package ui

import (
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
	if _, err := fmt.Fprintf(out, "%s\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ", strings.TrimRight(question, "\n")); err != nil {
		return false, fmt.Errorf("ask for confirmation: %w", err)
	}
	var answer []byte
	buf := make([]byte, 1)
	for {
		n, err := in.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			answer = append(answer, buf[0])
			if len(answer) > 1024 {
				return false, errors.New("read confirmation: answer too long")
			}
		}
		if errors.Is(err, io.EOF) {
			// A closed input (Ctrl-D) is a refusal; say so on a fresh line.
			_, _ = io.WriteString(out, "\n")
			break
		}
		if err != nil {
			return false, fmt.Errorf("read confirmation: %w", err)
		}
	}
	if _, err := io.WriteString(out, "\n"); err != nil {
		return false, fmt.Errorf("ask for confirmation: %w", err)
	}
	return strings.TrimSpace(string(answer)) == "yes", nil
}
