package sfu

import (
	"sync"

	"github.com/pion/interceptor"
)

// receiveOnlyFactory makes receiveOnly interceptors around f's.
type receiveOnlyFactory struct {
	f interceptor.Factory
}

func (r receiveOnlyFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	i, err := r.f.NewInterceptor(id)
	if err != nil {
		return nil, err
	}
	return &receiveOnly{Interceptor: i}, nil
}

// receiveOnly delays an interceptor's BindRTCPWriter until its
// PeerConnection binds its first remote stream. pion's NACK generator,
// TWCC feedback sender and receiver reports each start a goroutine with
// a ticker (every 100 ms, 100 ms and 1 s) when their RTCP writer is
// bound, at PeerConnection creation, and have work only for media the
// PeerConnection receives. Most of the SFU's PeerConnections only send
// (a subscriber's), so undelayed, a 40-subscriber room woke the server
// some 800 times a second for nothing.
//
// It relies on what those three do: their BindRTCPWriter returns the
// writer it was given, so returning it at once is the same for the
// interceptors after them.
type receiveOnly struct {
	interceptor.Interceptor

	mu      sync.Mutex
	writer  interceptor.RTCPWriter
	started bool
}

// BindRTCPWriter keeps w for the first remote stream.
func (r *receiveOnly) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writer = w
	return w
}

// BindRemoteStream binds the kept RTCP writer first, once.
func (r *receiveOnly) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	r.mu.Lock()
	if !r.started && r.writer != nil {
		r.started = true
		r.Interceptor.BindRTCPWriter(r.writer)
	}
	r.mu.Unlock()
	return r.Interceptor.BindRemoteStream(info, reader)
}
