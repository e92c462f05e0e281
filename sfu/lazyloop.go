package sfu

import (
	"sync"
	"sync/atomic"

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
// PeerConnection binds its first remote stream. pion's NACK generator
// and receiver reports each start a goroutine with a ticker (every 100 ms
// and 1 s) when their RTCP writer is bound, at PeerConnection creation,
// and have work only for media the PeerConnection receives (the SFU's
// own TWCC feedback, twccFeedback, starts the same way by itself). Most
// of the SFU's PeerConnections only send (a subscriber's), so undelayed,
// a 40-subscriber room woke the server some 800 times a second for
// nothing.
//
// It relies on what those two do: their BindRTCPWriter returns the
// writer it was given, so returning it at once is the same for the
// interceptors after them.
type receiveOnly struct {
	interceptor.Interceptor

	mu      sync.Mutex
	writer  interceptor.RTCPWriter
	started atomic.Bool // set under mu
}

// BindRTCPWriter keeps w for the first remote stream.
func (r *receiveOnly) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writer = w
	return w
}

// BindRTCPReader passes the RTCP the PeerConnection reads through the
// interceptor only once it has started: before, pion's receiver reports
// would parse every packet (for sender reports of streams it does not
// have) only to find nothing to do.
func (r *receiveOnly) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	inner := r.Interceptor.BindRTCPReader(reader)
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		if r.started.Load() {
			return inner.Read(b, a)
		}
		return reader.Read(b, a)
	})
}

// BindRemoteStream binds the kept RTCP writer first, once.
func (r *receiveOnly) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	r.mu.Lock()
	if !r.started.Load() && r.writer != nil {
		r.Interceptor.BindRTCPWriter(r.writer)
		r.started.Store(true)
	}
	r.mu.Unlock()
	return r.Interceptor.BindRemoteStream(info, reader)
}
