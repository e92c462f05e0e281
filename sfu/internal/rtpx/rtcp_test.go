package rtpx

import (
	"math"
	"testing"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// compound marshals pkts with pion's rtcp, the reference.
func compound(t testing.TB, pkts ...rtcp.Packet) []byte {
	t.Helper()
	b, err := rtcp.Marshal(pkts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// twccFeedback is TWCC feedback as pion's recorder builds it.
func twccFeedback() rtcp.Packet {
	rec := twcc.NewRecorder(1)
	for i := range 10 {
		rec.Record(2, uint16(i), int64(i)*1000)
	}
	return rec.BuildFeedbackPacket()[0]
}

// walk reads b with NextRTCP the way the SFU does: kinds, the NACK pairs
// and REMB bitrates in order, and whether it stopped at a malformed
// packet.
func walk(b []byte) (kinds []RTCPKind, nacks []rtcp.NackPair, rembs []int64, stopped bool) {
	for len(b) > 0 {
		kind, pkt, rest, ok := NextRTCP(b)
		if !ok {
			return kinds, nacks, rembs, true
		}
		b = rest
		kinds = append(kinds, kind)
		switch kind {
		case RTCPNack:
			NackPairs(pkt, func(id, lost uint16) {
				nacks = append(nacks, rtcp.NackPair{PacketID: id, LostPackets: rtcp.PacketBitmap(lost)})
			})
		case RTCPREMB:
			rembs = append(rembs, REMBBitrate(pkt))
		}
	}
	return kinds, nacks, rembs, false
}

func TestNextRTCPReadsWhatTheSFUActsOn(t *testing.T) {
	nack := &rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 100, LostPackets: 0b101}, {PacketID: 65535, LostPackets: 0xffff}}}
	b := compound(t,
		&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2, FractionLost: 3}}},
		&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2},
		&rtcp.FullIntraRequest{SenderSSRC: 1, MediaSSRC: 2, FIR: []rtcp.FIREntry{{SSRC: 2, SequenceNumber: 7}}},
		nack,
		&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 2_500_000, SSRCs: []uint32{2, 3}},
		twccFeedback(),
		&rtcp.SenderReport{SSRC: 9, NTPTime: 0x0102030405060708},
		&rtcp.SourceDescription{Chunks: []rtcp.SourceDescriptionChunk{{Source: 1, Items: []rtcp.SourceDescriptionItem{{Type: rtcp.SDESCNAME, Text: "x"}}}}},
	)
	kinds, nacks, rembs, stopped := walk(b)
	want := []RTCPKind{RTCPReceiverReport, RTCPPLI, RTCPFIR, RTCPNack, RTCPREMB, RTCPTWCC, RTCPSenderReport, RTCPOther}
	if stopped || len(kinds) != len(want) {
		t.Fatalf("kinds %v (stopped %v), want %v", kinds, stopped, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("packet %d: kind %d, want %d", i, kinds[i], want[i])
		}
	}
	if len(nacks) != 2 || nacks[0] != nack.Nacks[0] || nacks[1] != nack.Nacks[1] {
		t.Fatalf("NACK pairs %v, want %v", nacks, nack.Nacks)
	}
	// pion rounds the bitrate into an 18-bit mantissa.
	if len(rembs) != 1 || math.Abs(float64(rembs[0])-2_500_000) > 2_500_000/(1<<17) {
		t.Fatalf("REMB %v, want about 2,500,000", rembs)
	}
}

func TestNextRTCPStopsAtMalformedPackets(t *testing.T) {
	pli := compound(t, &rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2})
	for name, b := range map[string][]byte{
		"short":       pli[:3],
		"version 1":   append([]byte{0x41}, pli[1:]...),
		"length past": append(append([]byte{}, pli[:3]...), pli[3]+1),
	} {
		if _, _, _, ok := NextRTCP(b); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	// A good packet, then one whose length runs past the end: the first
	// counts, the walk stops at the second.
	bad := append([]byte{}, pli...)
	bad[3]++
	kinds, _, _, stopped := walk(append(append([]byte{}, pli...), bad...))
	if !stopped || len(kinds) != 1 || kinds[0] != RTCPPLI {
		t.Fatalf("kinds %v stopped %v, want one PLI then a stop", kinds, stopped)
	}
	// PT 206 FMT 15 without the "REMB" identifier is something else.
	remb := compound(t, &rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1e6})
	copy(remb[12:], "ABCD")
	if k, _, _, _ := NextRTCP(remb); k != RTCPOther {
		t.Fatalf("application feedback without REMB: kind %d", k)
	}
}

func TestNackPairsSkipsPadding(t *testing.T) {
	b := compound(t, &rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 7}}})
	// Add four bytes of padding, the last saying so, and set the P bit.
	b = append(b, 0, 0, 0, 4)
	b[0] |= 0x20
	b[3]++
	_, nacks, _, stopped := walk(b)
	if stopped || len(nacks) != 1 || nacks[0].PacketID != 7 {
		t.Fatalf("pairs %v stopped %v, want the one pair", nacks, stopped)
	}
	// Padding longer than the packet: no pairs at all.
	b[len(b)-1] = 200
	if _, nacks, _, _ := walk(b); len(nacks) != 0 {
		t.Fatalf("pairs %v from a packet with impossible padding", nacks)
	}
}

func TestREMBBitrateSaturates(t *testing.T) {
	pkt := compound(t, &rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1e6})
	pkt[17], pkt[18], pkt[19] = 63<<2|3, 0xff, 0xff // exponent 63, largest mantissa
	if got := REMBBitrate(pkt); got != math.MaxInt64 {
		t.Fatalf("bitrate %d, want saturation at MaxInt64", got)
	}
	pkt[17], pkt[18], pkt[19] = 44<<2|3, 0xff, 0xff
	if got := REMBBitrate(pkt); got != (1<<18-1)<<44 {
		t.Fatalf("bitrate %d at exponent 44", got)
	}
}

func TestNextRTCPAllocatesNothing(t *testing.T) {
	b := compound(t,
		&rtcp.ReceiverReport{SSRC: 1},
		&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 1}, {PacketID: 2}}},
		&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 1e6},
	)
	var sum int64
	allocs := testing.AllocsPerRun(100, func() {
		for rest := b; len(rest) > 0; {
			kind, pkt, next, ok := NextRTCP(rest)
			if !ok {
				break
			}
			rest = next
			switch kind {
			case RTCPNack:
				NackPairs(pkt, func(id, _ uint16) { sum += int64(id) })
			case RTCPREMB:
				sum += REMBBitrate(pkt)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per compound packet", allocs)
	}
	_ = sum
}

// FuzzRTCP checks NextRTCP against pion's rtcp.Unmarshal: never a panic,
// never a packet outside the input, and for what pion reads whole, the
// same kinds, NACK pairs and REMB bitrates.
func FuzzRTCP(f *testing.F) {
	f.Add(compound(f, &rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 2},
		&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 2, Nacks: []rtcp.NackPair{{PacketID: 9, LostPackets: 3}}},
		&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: 8e6, SSRCs: []uint32{2}},
		&rtcp.ReceiverReport{SSRC: 1}))
	f.Add([]byte{0x80, 201, 0, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		total, padded := 0, false
		for rest := b; len(rest) > 0; {
			_, pkt, next, ok := NextRTCP(rest)
			if !ok {
				break
			}
			if len(pkt) < 4 || len(pkt)+len(next) != len(rest) {
				t.Fatalf("split %d + %d of %d bytes", len(pkt), len(next), len(rest))
			}
			total += len(pkt)
			padded = padded || pkt[0]&0x20 != 0
			rest = next
		}
		if total > len(b) {
			t.Fatalf("read %d of %d bytes", total, len(b))
		}
		pkts, err := rtcp.Unmarshal(b)
		if err != nil {
			return
		}
		kinds, nacks, rembs, stopped := walk(b)
		if stopped || len(kinds) != len(pkts) {
			t.Fatalf("%d packets (stopped %v), pion read %d", len(kinds), stopped, len(pkts))
		}
		var wantNacks []rtcp.NackPair
		var wantREMB []float32
		for i, p := range pkts {
			switch p := p.(type) {
			case *rtcp.PictureLossIndication:
				expect(t, i, kinds[i], RTCPPLI)
			case *rtcp.FullIntraRequest:
				expect(t, i, kinds[i], RTCPFIR)
			case *rtcp.TransportLayerNack:
				expect(t, i, kinds[i], RTCPNack)
				wantNacks = append(wantNacks, p.Nacks...)
			case *rtcp.TransportLayerCC:
				expect(t, i, kinds[i], RTCPTWCC)
			case *rtcp.ReceiverReport:
				expect(t, i, kinds[i], RTCPReceiverReport)
			case *rtcp.SenderReport:
				expect(t, i, kinds[i], RTCPSenderReport)
			case *rtcp.ReceiverEstimatedMaximumBitrate:
				expect(t, i, kinds[i], RTCPREMB)
				wantREMB = append(wantREMB, p.Bitrate)
			}
		}
		// pion reads a NACK's padding as pairs; NackPairs leaves it out
		// (and reads none when the padding length is impossible).
		if padded {
			wantNacks = nacks
		}
		if len(nacks) != len(wantNacks) {
			t.Fatalf("NACK pairs %v, pion %v", nacks, wantNacks)
		}
		for i := range nacks {
			if nacks[i] != wantNacks[i] {
				t.Fatalf("NACK pairs %v, pion %v", nacks, wantNacks)
			}
		}
		if len(rembs) != len(wantREMB) {
			t.Fatalf("REMB %v, pion %v", rembs, wantREMB)
		}
		for i := range rembs {
			// pion's bitrate is a float32 and saturates at its largest
			// value; compare where neither saturated.
			// pion reads a zero mantissa as 2 to the exponent, not
			// as zero.
			w := float64(wantREMB[i])
			if rembs[i] != 0 && rembs[i] != math.MaxInt64 && w < math.MaxFloat32 && math.Abs(float64(rembs[i])-w) > w*1e-6+1 {
				t.Fatalf("REMB %d, pion %v", rembs[i], w)
			}
		}
	})
}

func expect(t *testing.T, i int, got, want RTCPKind) {
	t.Helper()
	if got != want {
		t.Fatalf("packet %d: kind %d, pion says %d", i, got, want)
	}
}

func TestSenderReportTime(t *testing.T) {
	b := compound(t, &rtcp.SenderReport{SSRC: 0xdeadbeef, NTPTime: 0x0102030405060708, RTPTime: 9, PacketCount: 3})
	kind, pkt, _, ok := NextRTCP(b)
	if !ok || kind != RTCPSenderReport {
		t.Fatalf("kind %d, ok %v", kind, ok)
	}
	ssrc, ntp, ok := SenderReportTime(pkt)
	if !ok || ssrc != 0xdeadbeef || ntp != 0x0102030405060708 {
		t.Fatalf("SSRC %x, NTP %x, ok %v", ssrc, ntp, ok)
	}
	if _, _, ok := SenderReportTime(pkt[:27]); ok {
		t.Fatal("a sender report cut short read as whole")
	}
}
