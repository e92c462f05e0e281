package sfu

import (
	"errors"
	"fmt"
	"testing"

	"poosms.org/poosms/stanza"
)

// A refusal reaches the client as its condition with its text; any other
// error as internal-server-error, its details kept from the client.
func TestErrorReplyConditions(t *testing.T) {
	iq := stanza.New(stanza.NSClient, "iq").SetAttr("type", "set").SetAttr("id", "1")
	for _, tc := range []struct {
		err  error
		cond string
		text string
	}{
		{refuse(errNoRoom, "the conference is full"), "resource-constraint", "the conference is full"},
		{fmt.Errorf("join: %w", refuse(errGlare, "answer first")), "unexpected-request", "answer first"},
		{refuse(errOverLimit, "%s", "at most 8 tracks"), "policy-violation", "at most 8 tracks"},
		{refuse(errShuttingDown, "shutting down"), "service-unavailable", "shutting down"},
		{refuse(errConferenceClosed, "conference closing"), "internal-server-error", "conference closing"},
		{errors.New("dtls: secret detail"), "internal-server-error", ""},
	} {
		r := errorReply(iq, tc.err)
		if got := condition(r); got != tc.cond {
			t.Errorf("%v: condition %q, want %q", tc.err, got, tc.cond)
		}
		text := ""
		if e := r.Child(stanza.NSClient, "error"); e != nil {
			if c := e.Child(stanza.NSStanzas, "text"); c != nil {
				text = c.Text()
			}
		}
		if text != tc.text {
			t.Errorf("%v: text %q, want %q", tc.err, text, tc.text)
		}
	}
}
