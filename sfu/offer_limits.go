package sfu

import (
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
)

// Defaults of the offer caps in Config.
const (
	DefaultMaxTracks        = 8
	DefaultMaxMediaSections = 16
)

// maxLayers is the most simulcast layers (RIDs) one track may send;
// browsers send three.
const maxLayers = 3

// parseSDP parses an SDP body enough to refuse garbage with a reason.
func parseSDP(text string) (*sdp.SessionDescription, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(text); err != nil {
		return nil, err
	}
	if len(sd.MediaDescriptions) == 0 {
		return nil, fmt.Errorf("no media sections")
	}
	return &sd, nil
}

// offerRefusal checks a client's offer against the caps before anything
// of it is applied, and returns why it is refused, or "". The media
// sections the server added to send the client others' tracks (their mids
// are in served) do not count: a client's offer repeats them. Of the rest,
// at most MaxMediaSections may be in one offer, at most MaxTracks may send
// audio or video, and each of those at most maxLayers simulcast layers.
func offerRefusal(sd *sdp.SessionDescription, served map[string]bool, maxTracks, maxSections int) string {
	sections, tracks := 0, 0
	for _, md := range sd.MediaDescriptions {
		if mid, ok := md.Attribute("mid"); ok && served[mid] {
			continue
		}
		sections++
		kind := md.MediaName.Media
		if (kind != "audio" && kind != "video") || !sends(sd, md) {
			continue
		}
		tracks++
		layers := 0
		for _, a := range md.Attributes {
			if a.Key == "rid" && strings.Contains(" "+a.Value+" ", " send ") {
				layers++
			}
		}
		if layers > maxLayers {
			return fmt.Sprintf("a track may send at most %d simulcast layers", maxLayers)
		}
	}
	switch {
	case sections > maxSections:
		return fmt.Sprintf("an offer may carry at most %d media sections of its own (it has %d)", maxSections, sections)
	case tracks > maxTracks:
		return fmt.Sprintf("a participant may publish at most %d tracks (the offer sends %d)", maxTracks, tracks)
	}
	return ""
}

// sends reports whether the offerer sends media in md: its direction (or
// the session's, sendrecv by default) is sendrecv or sendonly, and it is
// not rejected (port 0 without bundle-only).
func sends(sd *sdp.SessionDescription, md *sdp.MediaDescription) bool {
	if md.MediaName.Port.Value == 0 {
		if _, bundled := md.Attribute("bundle-only"); !bundled {
			return false
		}
	}
	dir := "sendrecv"
	for _, attrs := range [][]sdp.Attribute{sd.Attributes, md.Attributes} {
		for _, a := range attrs {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				dir = a.Key
			}
		}
	}
	return dir == "sendrecv" || dir == "sendonly"
}
