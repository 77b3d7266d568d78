package packet

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/packethost/packngo"
)

// redacted replaces the token wherever it would otherwise be shown.
const redacted = "[REDACTED]"

// secret holds the API token. It is kept behind a pointer in every struct
// so that printing the struct (even with %+v) shows an address, never the
// token, and it prints itself redacted when formatted directly.
type secret struct{ v string }

// String never reveals the token.
func (s *secret) String() string { return redacted }

// GoString never reveals the token.
func (s *secret) GoString() string { return redacted }

// redact replaces every occurrence of the token in text.
func (s *secret) redact(text string) string {
	if s == nil || s.v == "" {
		return text
	}
	return strings.ReplaceAll(text, s.v, redacted)
}

// redactErr returns err, or an error with the same message minus the
// token if err's message contains it. The chain is kept whenever it is
// safe to keep, so errors.Is(err, context.Canceled) keeps working.
func (s *secret) redactErr(err error) error {
	if err == nil || s == nil || s.v == "" || !strings.Contains(err.Error(), s.v) {
		return err
	}
	return errors.New(s.redact(err.Error()))
}

// APIError is a failed API operation, named after the operation and the
// device it was about. It renders like
//
//	create device "web-ams1-2" (slot web/ams1/2): 422 The facility ams9 is unknown
type APIError struct {
	Op     string // "create device", "list devices", "delete device", ...
	Device string // hostname, or id when the hostname is unknown
	Slot   string // the device's lkfleet slot, if known
	// Status is the HTTP status of the final answer, 0 if none arrived.
	Status int
	// Messages are the service's error messages (its `errors` and `error`).
	Messages []string
	// Indeterminate is true when the request may have taken effect even
	// though it failed: a create that timed out, got a 5xx, lost its
	// connection or whose answer could not be read may have made the
	// device. See Ambiguous.
	Indeterminate bool
	// Err is the underlying transport or decoding error, if any.
	Err error
}

// Error renders the operation, the device, the status and the messages.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Device != "" {
		fmt.Fprintf(&b, " %q", e.Device)
	}
	if e.Slot != "" {
		fmt.Fprintf(&b, " (slot %s)", e.Slot)
	}
	b.WriteString(":")
	if e.Status != 0 {
		fmt.Fprintf(&b, " %d", e.Status)
	}
	if len(e.Messages) > 0 {
		b.WriteString(" " + strings.Join(e.Messages, "; "))
	} else if e.Status != 0 {
		b.WriteString(" " + http.StatusText(e.Status))
	}
	if e.Err != nil {
		b.WriteString(" " + e.Err.Error())
	}
	switch {
	case e.Indeterminate && e.Op == opCreateBatch:
		b.WriteString(" (the devices may have been created)")
	case e.Indeterminate && strings.HasPrefix(e.Op, "create"):
		b.WriteString(" (the device may have been created)")
	}
	return b.String()
}

// Unwrap returns the transport or decoding error behind e.
func (e *APIError) Unwrap() error { return e.Err }

// Ambiguous reports whether the operation may have taken effect although
// it failed. For a create the caller must look the slot up by its tag
// before creating again.
func (e *APIError) Ambiguous() bool { return e.Indeterminate }

// apiError turns what packngo returned into an *APIError. mayAct says
// whether the request could have acted before failing (creates and
// actions): then anything but a definite refusal (a 4xx) is indeterminate.
func (c *Client) apiError(op, device, slot string, err error, mayAct bool) *APIError {
	e := &APIError{Op: op, Device: device, Slot: slot}
	if er, ok := errors.AsType[*packngo.ErrorResponse](err); ok {
		if er.Response != nil {
			e.Status = er.Response.StatusCode
		}
		for _, m := range er.Errors {
			if m = strings.TrimSpace(m); m != "" {
				e.Messages = append(e.Messages, c.tok.redact(m))
			}
		}
		if m := strings.TrimSpace(er.SingleError); m != "" {
			e.Messages = append(e.Messages, c.tok.redact(m))
		}
		e.Indeterminate = mayAct && e.Status >= 500
		return e
	}
	// No status: the transport failed, the context ended, or the answer
	// could not be decoded. Only a connection that never opened proves
	// nothing happened.
	e.Err = c.tok.redactErr(describeFailure(err))
	e.Indeterminate = mayAct && !neverSent(err) && !isWaitError(err)
	return e
}

// describeFailure says in words what kind of failure err is: no answer
// (transport), or an answer that could not be read.
func describeFailure(err error) error {
	inner := unwrapURLError(err)
	switch {
	case errors.Is(inner, context.Canceled), errors.Is(inner, context.DeadlineExceeded), isWaitError(inner):
		return inner
	case inner != err:
		return fmt.Errorf("no answer: %w", inner)
	}
	return fmt.Errorf("unreadable answer: %w", inner)
}

func isWaitError(err error) bool {
	_, ok := errors.AsType[*waitError](err)
	return ok
}
