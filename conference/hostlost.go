package conference

import (
	"context"
	"strconv"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/chat/muc"
	"poosms.org/poosms/stanza"
)

// statusSelf is XEP-0045's status code 110: the presence is the
// occupant's own.
const statusSelf = 110

// HostLost tells sess, a session of this node, that it is out of room,
// where it was nick, because the node that hosted the room is gone: its
// own unavailable presence from room/nick with status codes 110 and 332
// (XEP-0045, "removed because of a system shutdown"). Joining again
// places the room on a live node. It does not need Start: the room ran
// elsewhere.
func (s *Service) HostLost(_ context.Context, sess chat.Session, room jid.JID, nick string) {
	_ = sess.Send(hostLostPresence(room, nick, sess.JID()))
}

// hostLostPresence is HostLost's presence from room/nick to full.
func hostLostPresence(room jid.JID, nick string, full jid.JID) *stanza.Element {
	x := stanza.New(muc.NSUser, "x")
	x.Append(stanza.New(muc.NSUser, "item").SetAttr("affiliation", "none").SetAttr("role", "none"))
	x.Append(stanza.New(muc.NSUser, "status").SetAttr("code", strconv.Itoa(statusSelf)))
	x.Append(stanza.New(muc.NSUser, "status").SetAttr("code", strconv.Itoa(muc.StatusMoved)))
	p := stanza.New(stanza.NSClient, "presence").
		SetAttr("from", room.String()+"/"+nick).
		SetAttr("to", full.String()).
		SetAttr("type", "unavailable")
	p.Append(x)
	return p
}
