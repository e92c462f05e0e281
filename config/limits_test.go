package config

import (
	"errors"
	"testing"
)

// limitValues adds a value for every per-user limit to values (by
// setting name) and the field it gives to want.
func limitValues(want *Config, values map[string]string) {
	want.PEPMaxItemBytes, values["pep-max-item-bytes"] = 2048, "2048"
	want.PEPMaxItems, values["pep-max-items"] = 50, "50"
	want.PEPMaxNodeBytes, values["pep-max-node-bytes"] = 4096, "4096"
	want.PEPMaxNodes, values["pep-max-nodes"] = 20, "20"
	want.RosterMaxItems, values["roster-max-items"] = 300, "300"
	want.MaxDirectedPresences, values["max-directed-presences"] = 9, "9"
	want.PrivateMaxBytes, values["private-max-bytes"] = 8192, "8192"
	want.VCardMaxBytes, values["vcard-max-bytes"] = 4096, "4096"
	want.ArchiveMaxMessages, values["archive-max-messages"] = 5000, "5000"
	want.ArchiveMaxBytes, values["archive-max-bytes"] = 1<<25, "33554432"
	want.OfflineLimitPerSender, values["offline-limit-per-sender"] = 10, "10"
	want.MaxNewRoomsPerHour, values["max-new-rooms-per-hour"] = 5, "5"
	want.UploadMaxFiles, values["upload-max-files"] = 77, "77"
	want.MaxTracksPerParticipant, values["max-tracks-per-participant"] = 3, "3"
	want.MaxMediaSections, values["max-media-sections"] = 6, "6"
}

func TestLimitsChecked(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		setting string
	}{
		{[]string{"--pep-max-item-bytes", "100"}, "--pep-max-item-bytes"},
		{[]string{"--pep-max-item-bytes", "2000000"}, "--pep-max-node-bytes"}, // over the default node bytes
		{[]string{"--pep-max-node-bytes", "2048", "--pep-max-item-bytes", "4096"}, "--pep-max-node-bytes"},
		{[]string{"--roster-max-items", "0"}, "--roster-max-items"},
		{[]string{"--upload-max-files", "-1"}, "--upload-max-files"},
		{[]string{"--max-tracks-per-participant", "20"}, "--max-media-sections"}, // over the default sections
		{[]string{"--archive-max-bytes", "1000"}, "--archive-max-bytes"},
	} {
		_, _, err := Load(tc.args, nil)
		var ce *Error
		if !errors.As(err, &ce) || ce.Setting != tc.setting {
			t.Errorf("Load(%q) = %v, want an error naming %s", tc.args, err, tc.setting)
		}
	}
	if _, _, err := Load([]string{"--max-tracks-per-participant", "20", "--max-media-sections", "24"}, nil); err != nil {
		t.Errorf("more tracks with room for them: %v", err)
	}
}
