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
	read   int // RTCP packets read through the interceptor's reader
}

func (l *loopCounter) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		l.read++
		return r.Read(b, a)
	})
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
	var fromPeer int
	reader := r.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		fromPeer++
		return len(b), a, nil
	}))
	// A sending-only PeerConnection binds local streams only: no loop.
	r.BindLocalStream(&interceptor.StreamInfo{SSRC: 1}, nil)
	if _, _, err := reader.Read(make([]byte, 8), nil); err != nil {
		t.Fatal(err)
	}
	if inner.bound != 0 || inner.read != 0 || fromPeer != 1 {
		t.Fatalf("before any remote stream: RTCP writer bound %d times, %d RTCP packets through the interceptor (want 0, 0), %d read", inner.bound, inner.read, fromPeer)
	}
	r.BindRemoteStream(&interceptor.StreamInfo{SSRC: 2}, nil)
	r.BindRemoteStream(&interceptor.StreamInfo{SSRC: 3}, nil)
	if inner.bound != 1 {
		t.Fatalf("the RTCP writer was bound %d times after two remote streams, want 1", inner.bound)
	}
	if _, _, err := reader.Read(make([]byte, 8), nil); err != nil {
		t.Fatal(err)
	}
	if inner.read != 1 || fromPeer != 2 {
		t.Fatalf("after: %d RTCP packets through the interceptor, %d read; want 1, 2", inner.read, fromPeer)
	}
	// The inner interceptor writes through the writer the PeerConnection gave.
	if _, err := inner.writer.Write(nil, nil); err != nil || wrote != 1 {
		t.Fatalf("write through the kept writer: %v, %d writes", err, wrote)
	}
}
