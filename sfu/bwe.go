package sfu

import (
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/webrtc/v4"
)

// registerBWE adds send-side bandwidth estimation from the subscriber's
// TWCC feedback. Packets are not paced: the estimate only steers which
// simulcast layer a subscriber gets.
func registerBWE(m *webrtc.MediaEngine, reg *interceptor.Registry, onBWE func(cc.BandwidthEstimator)) error {
	f, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		return gcc.NewSendSideBWE(
			gcc.SendSideBWEInitialBitrate(initialEstimate),
			gcc.SendSideBWEMinBitrate(minEstimate),
			gcc.SendSideBWEMaxBitrate(maxEstimate),
			gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
		)
	})
	if err != nil {
		return err
	}
	f.OnNewPeerConnection(func(_ string, e cc.BandwidthEstimator) { onBWE(e) })
	reg.Add(f)
	return webrtc.ConfigureTWCCHeaderExtensionSender(m, reg)
}

// Bandwidth estimate bounds, bits per second.
const (
	initialEstimate = 2_500_000
	minEstimate     = 100_000
	maxEstimate     = 20_000_000
)
