package stanza

// ErrorType is a stanza error's type (RFC 6120 §8.3.2): what the sender
// may do about it.
type ErrorType string

// Stanza error types.
const (
	ErrAuth     ErrorType = "auth"
	ErrCancel   ErrorType = "cancel"
	ErrContinue ErrorType = "continue"
	ErrModify   ErrorType = "modify"
	ErrWait     ErrorType = "wait"
)

// Condition is a defined stanza error condition (RFC 6120 §8.3.3). Its
// constants are the full set; Type gives each its error type, so a
// condition outside the set is never sent with a guessed one.
type Condition string

// The defined conditions.
const (
	BadRequest            Condition = "bad-request"
	Conflict              Condition = "conflict"
	FeatureNotImplemented Condition = "feature-not-implemented"
	Forbidden             Condition = "forbidden"
	Gone                  Condition = "gone"
	InternalServerError   Condition = "internal-server-error"
	ItemNotFound          Condition = "item-not-found"
	JIDMalformed          Condition = "jid-malformed"
	NotAcceptable         Condition = "not-acceptable"
	NotAllowed            Condition = "not-allowed"
	NotAuthorized         Condition = "not-authorized"
	PolicyViolation       Condition = "policy-violation"
	RecipientUnavailable  Condition = "recipient-unavailable"
	Redirect              Condition = "redirect"
	RegistrationRequired  Condition = "registration-required"
	RemoteServerNotFound  Condition = "remote-server-not-found"
	RemoteServerTimeout   Condition = "remote-server-timeout"
	ResourceConstraint    Condition = "resource-constraint"
	ServiceUnavailable    Condition = "service-unavailable"
	SubscriptionRequired  Condition = "subscription-required"
	UndefinedCondition    Condition = "undefined-condition"
	UnexpectedRequest     Condition = "unexpected-request"
)

// conditionType is each defined condition's error type, as RFC 6120
// §8.3.3 gives it.
var conditionType = map[Condition]ErrorType{
	BadRequest:            ErrModify,
	Conflict:              ErrCancel,
	FeatureNotImplemented: ErrCancel,
	Forbidden:             ErrAuth,
	Gone:                  ErrCancel,
	InternalServerError:   ErrCancel,
	ItemNotFound:          ErrCancel,
	JIDMalformed:          ErrModify,
	NotAcceptable:         ErrModify,
	NotAllowed:            ErrCancel,
	NotAuthorized:         ErrAuth,
	PolicyViolation:       ErrModify,
	RecipientUnavailable:  ErrWait,
	Redirect:              ErrModify,
	RegistrationRequired:  ErrAuth,
	RemoteServerNotFound:  ErrCancel,
	RemoteServerTimeout:   ErrWait,
	ResourceConstraint:    ErrWait,
	ServiceUnavailable:    ErrCancel,
	SubscriptionRequired:  ErrAuth,
	UndefinedCondition:    ErrCancel,
	UnexpectedRequest:     ErrWait,
}

// Type is the condition's error type; "" for a condition that RFC 6120
// does not define.
func (c Condition) Type() ErrorType { return conditionType[c] }

// Defined reports whether c is one of the conditions RFC 6120 defines.
func (c Condition) Defined() bool { return conditionType[c] != "" }

// ErrorReply builds the error reply to stanza orig: to and from swapped,
// the same id, type='error', the original payload kept (RFC 6120 §8.3.1
// allows it; clients use it to match), and an <error/> with condition and
// optional text. A condition RFC 6120 does not define is sent as
// undefined-condition, the condition for what the others do not cover.
// orig is not modified.
func ErrorReply(orig *Element, condition Condition, text string) *Element {
	r := &Element{Space: orig.Space, Local: orig.Local}
	if id := orig.ID(); id != "" {
		r.SetAttr("id", id)
	}
	r.SetAttr("type", "error") // the same word for every kind of stanza
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
	typ := condition.Type()
	if typ == "" {
		condition, typ = UndefinedCondition, UndefinedCondition.Type()
	}
	e := New(NSClient, "error").SetAttr("type", string(typ))
	e.Append(New(NSStanzas, string(condition)))
	if text != "" {
		e.Append(New(NSStanzas, "text").SetText(text))
	}
	return r.Append(e)
}

// ErrorCondition returns the condition of el's <error/> child (RFC 6120
// §8.3.3), or "" when it has none. A condition from another server is
// returned as sent: Defined tells whether RFC 6120 knows it.
func ErrorCondition(el *Element) Condition {
	e := el.Child("", "error")
	if e == nil {
		return ""
	}
	for _, c := range e.Elements() {
		if c.Space == NSStanzas && c.Local != "text" {
			return Condition(c.Local)
		}
	}
	return ""
}

// Result builds an IQ result for request iq, with optional payload.
func Result(iq *Element, payload ...*Element) *Element {
	r := NewIQ(ResultIQ).SetAttr("id", iq.ID())
	if f := iq.From(); f != "" {
		r.SetAttr("to", f)
	}
	if t := iq.To(); t != "" {
		r.SetAttr("from", t)
	}
	return r.Append(payload...)
}

// StreamError builds <stream:error> with a condition and optional text.
func StreamError(condition StreamCondition, text string) *Element {
	e := New(NSStream, "error")
	e.Append(New(NSStreams, string(condition)))
	if text != "" {
		e.Append(New(NSStreams, "text").SetText(text))
	}
	return e
}

// StreamCondition is a stream error condition (RFC 6120 §4.9.3).
type StreamCondition string

// The defined stream error conditions.
const (
	StreamBadFormat              StreamCondition = "bad-format"
	StreamBadNamespacePrefix     StreamCondition = "bad-namespace-prefix"
	StreamConflict               StreamCondition = "conflict"
	StreamConnectionTimeout      StreamCondition = "connection-timeout"
	StreamHostGone               StreamCondition = "host-gone"
	StreamHostUnknown            StreamCondition = "host-unknown"
	StreamImproperAddressing     StreamCondition = "improper-addressing"
	StreamInternalServerError    StreamCondition = "internal-server-error"
	StreamInvalidFrom            StreamCondition = "invalid-from"
	StreamInvalidNamespace       StreamCondition = "invalid-namespace"
	StreamInvalidXML             StreamCondition = "invalid-xml"
	StreamNotAuthorized          StreamCondition = "not-authorized"
	StreamNotWellFormed          StreamCondition = "not-well-formed"
	StreamPolicyViolation        StreamCondition = "policy-violation"
	StreamRemoteConnectionFailed StreamCondition = "remote-connection-failed"
	StreamReset                  StreamCondition = "reset"
	StreamResourceConstraint     StreamCondition = "resource-constraint"
	StreamRestrictedXML          StreamCondition = "restricted-xml"
	StreamSeeOtherHost           StreamCondition = "see-other-host"
	StreamSystemShutdown         StreamCondition = "system-shutdown"
	StreamUndefinedCondition     StreamCondition = "undefined-condition"
	StreamUnsupportedEncoding    StreamCondition = "unsupported-encoding"
	StreamUnsupportedFeature     StreamCondition = "unsupported-feature"
	StreamUnsupportedStanzaType  StreamCondition = "unsupported-stanza-type"
	StreamUnsupportedVersion     StreamCondition = "unsupported-version"
)
