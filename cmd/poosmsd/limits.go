package main

import (
	"poosms.org/poosms/chat"
	"poosms.org/poosms/config"
)

// chatLimits are the per-user limits of the chat service from the
// settings.
func chatLimits(cfg config.Config) chat.Limits {
	return chat.Limits{
		PEPItemBytes:      cfg.PEPMaxItemBytes,
		PEPItems:          cfg.PEPMaxItems,
		PEPNodeBytes:      cfg.PEPMaxNodeBytes,
		PEPNodes:          cfg.PEPMaxNodes,
		RosterItems:       cfg.RosterMaxItems,
		DirectedPresences: cfg.MaxDirectedPresences,
		PrivateBytes:      cfg.PrivateMaxBytes,
		VCardBytes:        cfg.VCardMaxBytes,
		ArchiveMessages:   cfg.ArchiveMaxMessages,
		ArchiveBytes:      int64(cfg.ArchiveMaxBytes),
		OfflinePerSender:  cfg.OfflineLimitPerSender,
	}
}
