package config

import "fmt"

// limitSettings are the per-user limits: what one user can make the
// server keep (docs/configuration.md, "Per-user limits").
var limitSettings = []*setting{
	intSetting("pep-max-item-bytes", "largest PEP item payload (avatars included)", 1024, 16<<20,
		"want a whole number of bytes between 1024 and 16777216",
		func(c *Config) *int { return &c.PEPMaxItemBytes }),
	intSetting("pep-max-items", "items one PEP node keeps (what max_items='max' means)", 1, 1<<20,
		"want a whole number of items, at least 1",
		func(c *Config) *int { return &c.PEPMaxItems }),
	intSetting("pep-max-node-bytes", "bytes of item payloads one PEP node keeps in all (at least --pep-max-item-bytes)", 1024, 1<<30,
		"want a whole number of bytes between 1024 and 1073741824",
		func(c *Config) *int { return &c.PEPMaxNodeBytes }),
	intSetting("pep-max-nodes", "PEP nodes one user may have", 1, 1<<20,
		"want a whole number of nodes, at least 1",
		func(c *Config) *int { return &c.PEPMaxNodes }),
	intSetting("roster-max-items", "contacts in one roster, pending subscription requests included", 1, 1<<20,
		"want a whole number of contacts, at least 1",
		func(c *Config) *int { return &c.RosterMaxItems }),
	intSetting("max-directed-presences", "addresses one session's directed presence is remembered for", 1, 1<<20,
		"want a whole number of addresses, at least 1",
		func(c *Config) *int { return &c.MaxDirectedPresences }),
	intSetting("private-max-bytes", "bytes one user keeps in private XML storage (XEP-0049), all namespaces together", 1024, 1<<30,
		"want a whole number of bytes between 1024 and 1073741824",
		func(c *Config) *int { return &c.PrivateMaxBytes }),
	intSetting("vcard-max-bytes", "largest vCard (XEP-0054), photo included", 1024, 16<<20,
		"want a whole number of bytes between 1024 and 16777216",
		func(c *Config) *int { return &c.VCardMaxBytes }),
	intSetting("archive-max-messages", "messages kept in one user's archive; past it the oldest are dropped", 1, 1<<40,
		"want a whole number of messages, at least 1",
		func(c *Config) *int { return &c.ArchiveMaxMessages }),
	intSetting("archive-max-bytes", "stanza bytes kept in one user's archive; past it the oldest messages are dropped", 1<<20, 1<<50,
		"want a whole number of bytes, at least 1048576",
		func(c *Config) *int { return &c.ArchiveMaxBytes }),
	intSetting("offline-limit-per-sender", "messages one sender may have waiting in one user's offline queue", 1, 1<<30,
		"want a whole number of messages, at least 1",
		func(c *Config) *int { return &c.OfflineLimitPerSender }),
	intSetting("max-new-rooms-per-hour", "rooms one user may create within an hour (on each node)", 1, 1<<20,
		"want a whole number of rooms, at least 1",
		func(c *Config) *int { return &c.MaxNewRoomsPerHour }),
	intSetting("upload-max-files", "files each user may keep shared, empty ones included", 1, 1<<30,
		"want a whole number of files, at least 1",
		func(c *Config) *int { return &c.UploadMaxFiles }),
	intSetting("max-tracks-per-participant", "tracks one conference participant may publish", 1, 1<<10,
		"want a whole number of tracks between 1 and 1024",
		func(c *Config) *int { return &c.MaxTracksPerParticipant }),
	intSetting("max-media-sections", "media sections of its own one conference offer may carry (at least --max-tracks-per-participant)", 1, 1<<12,
		"want a whole number of sections between 1 and 4096",
		func(c *Config) *int { return &c.MaxMediaSections }),
}

func init() { settings = append(settings, limitSettings...) }

// defaultLimits fills the per-user limits of c with their defaults.
func defaultLimits(c *Config) {
	c.PEPMaxItemBytes = 512 << 10
	c.PEPMaxItems = 1000
	c.PEPMaxNodeBytes = 1 << 20
	c.PEPMaxNodes = 128
	c.RosterMaxItems = 1000
	c.MaxDirectedPresences = 100
	c.PrivateMaxBytes = 1 << 20
	c.VCardMaxBytes = 256 << 10
	c.ArchiveMaxMessages = 100000
	c.ArchiveMaxBytes = 256 << 20
	c.OfflineLimitPerSender = 100
	c.MaxNewRoomsPerHour = 30
	c.UploadMaxFiles = 1000
	c.MaxTracksPerParticipant = 8
	c.MaxMediaSections = 16
}

// validateLimits checks the rules between per-user limits.
func (c Config) validateLimits() error {
	if c.PEPMaxNodeBytes < c.PEPMaxItemBytes {
		return &Error{Setting: "--pep-max-node-bytes", Value: fmt.Sprint(c.PEPMaxNodeBytes),
			Want: fmt.Sprintf("want at least --pep-max-item-bytes (%d), so that a node holds one item of the largest size", c.PEPMaxItemBytes)}
	}
	if c.MaxMediaSections < c.MaxTracksPerParticipant {
		return &Error{Setting: "--max-media-sections", Value: fmt.Sprint(c.MaxMediaSections),
			Want: fmt.Sprintf("want at least --max-tracks-per-participant (%d), each track being a media section", c.MaxTracksPerParticipant)}
	}
	return nil
}
