package stanza

// Stanza types (RFC 6120 §8.2.3, RFC 6121 §4.7.1 and §5.2.2). Each kind
// of stanza has its own Go type, so that the compiler refuses an IQ type
// compared with a message's or set on a presence built by NewPresence.
// The names follow mellium's stanza package: a "get IQ", a "chat message",
// an "unavailable presence".

// IQType is the type of an <iq/>.
type IQType string

// The IQ types.
const (
	GetIQ    IQType = "get"
	SetIQ    IQType = "set"
	ResultIQ IQType = "result"
	ErrorIQ  IQType = "error"
)

// MessageType is the type of a <message/>. An absent type reads as "",
// which RFC 6121 §5.2.2 treats as NormalMessage.
type MessageType string

// The message types.
const (
	NormalMessage    MessageType = "normal"
	ChatMessage      MessageType = "chat"
	GroupChatMessage MessageType = "groupchat"
	HeadlineMessage  MessageType = "headline"
	ErrorMessage     MessageType = "error"
)

// PresenceType is the type of a <presence/>. Availability has no type
// attribute: AvailablePresence is "".
type PresenceType string

// The presence types.
const (
	AvailablePresence    PresenceType = ""
	UnavailablePresence  PresenceType = "unavailable"
	SubscribePresence    PresenceType = "subscribe"
	SubscribedPresence   PresenceType = "subscribed"
	UnsubscribePresence  PresenceType = "unsubscribe"
	UnsubscribedPresence PresenceType = "unsubscribed"
	ProbePresence        PresenceType = "probe"
	ErrorPresence        PresenceType = "error"
)

// TypeValue is a stanza type of any kind: an IQType, a MessageType or a
// PresenceType. Only this package's types implement it.
type TypeValue interface{ typeValue() string }

func (t IQType) typeValue() string       { return string(t) }
func (t MessageType) typeValue() string  { return string(t) }
func (t PresenceType) typeValue() string { return string(t) }

// IQType, MessageType and PresenceType read the type attribute as the
// type of that kind of stanza; they do not check e's name.
func (e *Element) IQType() IQType             { return IQType(e.Attr("type")) }
func (e *Element) MessageType() MessageType   { return MessageType(e.Attr("type")) }
func (e *Element) PresenceType() PresenceType { return PresenceType(e.Attr("type")) }

// IsError reports whether e is a stanza of type error, of any kind.
func (e *Element) IsError() bool { return e.Attr("type") == "error" }

// SetType sets (or, with an empty type, removes) the type attribute and
// returns e.
func (e *Element) SetType(t TypeValue) *Element { return e.SetAttr("type", t.typeValue()) }

// NewIQ, NewMessage and NewPresence return a stanza of that kind in the
// client namespace with type t (none for an empty one).
func NewIQ(t IQType) *Element { return New(NSClient, "iq").SetAttr("type", string(t)) }
func NewMessage(t MessageType) *Element {
	return New(NSClient, "message").SetAttr("type", string(t))
}
func NewPresence(t PresenceType) *Element {
	return New(NSClient, "presence").SetAttr("type", string(t))
}
