package chat

import (
	"errors"
	"fmt"
)

// Limits bound what one user can make the server keep. A request that
// would go past one is refused with a stanza error that names the limit,
// and nothing already kept is lost, except where a field says otherwise
// (the archive drops its oldest messages, as retention does). Zero fields
// take the defaults below.
type Limits struct {
	// PEPItemBytes bounds one PEP item's serialised payload (XEP-0163);
	// larger is refused with not-acceptable and payload-too-big.
	// Default 524288 (512 KiB).
	PEPItemBytes int
	// PEPItems is the most items one PEP node keeps, what max_items='max'
	// means; a larger max_items is refused. Default 1000.
	PEPItems int
	// PEPNodeBytes bounds the payloads one PEP node keeps together; a
	// publish that would leave more is refused with not-acceptable and
	// payload-too-big. At least PEPItemBytes. Default 1048576 (1 MiB).
	PEPNodeBytes int
	// PEPNodes is the most PEP nodes one user may have; one more is
	// refused with resource-constraint and max-nodes-exceeded. Default 128.
	PEPNodes int
	// RosterItems is the most contacts one roster holds, pending
	// subscription requests included. A roster set, or a subscription
	// request sent or received, that would add one more is refused with
	// resource-constraint. Default 1000.
	RosterItems int
	// DirectedPresences is the most addresses one session's directed
	// presence is remembered for (to tell them when it goes offline); a
	// directed presence to one more is refused with resource-constraint.
	// Default 100.
	DirectedPresences int
	// PrivateBytes bounds what one user keeps in private XML storage
	// (XEP-0049), all namespaces together; past it a set is refused with
	// resource-constraint. Default 1048576 (1 MiB).
	PrivateBytes int
	// VCardBytes bounds one vCard (XEP-0054); larger is refused with
	// not-acceptable. Default 262144 (256 KiB).
	VCardBytes int
	// ArchiveMessages and ArchiveBytes cap one user's message archive
	// (XEP-0313). Past either the oldest messages are dropped, a sixteenth
	// of the cap at a time, so the archive never holds more.
	// Defaults 100000 messages and 268435456 bytes (256 MiB).
	ArchiveMessages int
	ArchiveBytes    int64
	// OfflinePerSender is the most messages one sender may have waiting in
	// one user's offline queue, so that one sender cannot fill it for
	// everyone (Config.OfflineLimit bounds the queue as a whole); past it
	// that sender's messages are refused with resource-constraint.
	// Default 100.
	OfflinePerSender int
}

// Defaults of Limits.
const (
	DefaultPEPItemBytes      = 512 << 10
	DefaultPEPItems          = 1000
	DefaultPEPNodeBytes      = 1 << 20
	DefaultPEPNodes          = 128
	DefaultRosterItems       = 1000
	DefaultDirectedPresences = 100
	DefaultPrivateBytes      = 1 << 20
	DefaultVCardBytes        = 256 << 10
	DefaultArchiveMessages   = 100000
	DefaultArchiveBytes      = 256 << 20
	DefaultOfflinePerSender  = 100
)

// withDefaults fills zero fields and checks the result.
func (l Limits) withDefaults() (Limits, error) {
	fill := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	fill(&l.PEPItemBytes, DefaultPEPItemBytes)
	fill(&l.PEPItems, DefaultPEPItems)
	fill(&l.PEPNodeBytes, DefaultPEPNodeBytes)
	fill(&l.PEPNodes, DefaultPEPNodes)
	fill(&l.RosterItems, DefaultRosterItems)
	fill(&l.DirectedPresences, DefaultDirectedPresences)
	fill(&l.PrivateBytes, DefaultPrivateBytes)
	fill(&l.VCardBytes, DefaultVCardBytes)
	fill(&l.ArchiveMessages, DefaultArchiveMessages)
	fill(&l.OfflinePerSender, DefaultOfflinePerSender)
	if l.ArchiveBytes == 0 {
		l.ArchiveBytes = DefaultArchiveBytes
	}
	for _, v := range []int{l.PEPItemBytes, l.PEPItems, l.PEPNodeBytes, l.PEPNodes, l.RosterItems,
		l.DirectedPresences, l.PrivateBytes, l.VCardBytes, l.ArchiveMessages, l.OfflinePerSender} {
		if v < 0 {
			return l, errors.New("chat: a limit is negative")
		}
	}
	if l.ArchiveBytes < 0 {
		return l, errors.New("chat: the archive byte cap is negative")
	}
	if l.PEPNodeBytes < l.PEPItemBytes {
		return l, fmt.Errorf("chat: a PEP node's %d bytes cannot hold one item of %d bytes", l.PEPNodeBytes, l.PEPItemBytes)
	}
	return l, nil
}
