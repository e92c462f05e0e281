package sfu

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// loopCounter is an interceptor that counts how often its RTCP writer is
// bound (where pion's start their tickers).
type loopCounter struct {
	interceptor.NoOp
	bound  int
	writer interceptor.RTCPWriter
}

func (l *loopCounter) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	l.bound++
	l.writer = w
	return w
}

func TestReceiveOnlyStartsWithTheFirstRemoteStream(t *testing.T) {
	inner := &loopCounter{}
	r := &receiveOnly{Interceptor: inner}
	var wrote int
	w := interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) { wrote++; return 0, nil })
	if got := r.BindRTCPWriter(w); got == nil {
		t.Fatal("BindRTCPWriter returned no writer")
	}
	// A sending-only PeerConnection binds local streams only: no loop.
	r.BindLocalStream(&interceptor.StreamInfo{SSRC: 1}, nil)
	if inner.bound != 0 {
		t.Fatalf("the RTCP writer was bound %d times before any remote stream", inner.bound)
	}
	r.BindRemoteStream(&interceptor.StreamInfo{SSRC: 2}, nil)
	r.BindRemoteStream(&interceptor.StreamInfo{SSRC: 3}, nil)
	if inner.bound != 1 {
		t.Fatalf("the RTCP writer was bound %d times after two remote streams, want 1", inner.bound)
	}
	// The inner interceptor writes through the writer the PeerConnection gave.
	if _, err := inner.writer.Write(nil, nil); err != nil || wrote != 1 {
		t.Fatalf("write through the kept writer: %v, %d writes", err, wrote)
	}
}
