package stanza

// Stanza error types (RFC 6120 §8.3.2).
const (
	ErrAuth     = "auth"
	ErrCancel   = "cancel"
	ErrContinue = "continue"
	ErrModify   = "modify"
	ErrWait     = "wait"
)

// Error conditions used by poosms with their default error type.
var conditionType = map[string]string{
	"bad-request":             ErrModify,
	"conflict":                ErrCancel,
	"feature-not-implemented": ErrCancel,
	"forbidden":               ErrAuth,
	"internal-server-error":   ErrCancel,
	"item-not-found":          ErrCancel,
	"jid-malformed":           ErrModify,
	"not-acceptable":          ErrModify,
	"not-allowed":             ErrCancel,
	"not-authorized":          ErrAuth,
	"policy-violation":        ErrModify,
	"recipient-unavailable":   ErrWait,
	"registration-required":   ErrAuth,
	"remote-server-not-found": ErrCancel,
	"remote-server-timeout":   ErrWait,
	"resource-constraint":     ErrWait,
	"service-unavailable":     ErrCancel,
	"subscription-required":   ErrAuth,
	"undefined-condition":     ErrCancel,
	"unexpected-request":      ErrWait,
}

// ErrorReply builds the error reply to stanza orig: to and from swapped,
// the same id, type='error', the original payload kept (RFC 6120 §8.3.1
// allows it; clients use it to match), and an <error/> with condition and
// optional text. orig is not modified.
func ErrorReply(orig *Element, condition, text string) *Element {
	r := &Element{Space: orig.Space, Local: orig.Local}
	if id := orig.ID(); id != "" {
		r.SetAttr("id", id)
	}
	r.SetAttr("type", "error")
	if f := orig.From(); f != "" {
		r.SetAttr("to", f)
	}
	if t := orig.To(); t != "" {
		r.SetAttr("from", t)
	}
	if orig.Local != "iq" {
		for _, c := range orig.Elements() {
			if c.Local == "error" {
				continue
			}
			r.Append(c.Copy())
		}
	}
	typ := conditionType[condition]
	if typ == "" {
		typ = ErrCancel
	}
	e := New(NSClient, "error").SetAttr("type", typ)
	e.Append(New(NSStanzas, condition))
	if text != "" {
		e.Append(New(NSStanzas, "text").SetText(text))
	}
	return r.Append(e)
}

// ErrorCondition returns the defined condition of el's <error/> child
// (RFC 6120 §8.3.3), or "" when it has none.
func ErrorCondition(el *Element) string {
	e := el.Child("", "error")
	if e == nil {
		return ""
	}
	for _, c := range e.Elements() {
		if c.Space == NSStanzas && c.Local != "text" {
			return c.Local
		}
	}
	return ""
}

// Result builds an IQ result for request iq, with optional payload.
func Result(iq *Element, payload ...*Element) *Element {
	r := New(NSClient, "iq").SetAttr("type", "result").SetAttr("id", iq.ID())
	if f := iq.From(); f != "" {
		r.SetAttr("to", f)
	}
	if t := iq.To(); t != "" {
		r.SetAttr("from", t)
	}
	return r.Append(payload...)
}

// StreamError builds <stream:error> with a condition and optional text.
func StreamError(condition, text string) *Element {
	e := New(NSStream, "error")
	e.Append(New(NSStreams, condition))
	if text != "" {
		e.Append(New(NSStreams, "text").SetText(text))
	}
	return e
}
