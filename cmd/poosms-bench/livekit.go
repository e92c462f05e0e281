package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	protoLogger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/internal/confclient"
)

// lkClient is one participant of a LiveKit room for `media --target
// livekit`. LiveKit's Go server SDK does the joining and signalling only:
// the packets published are the bench's own (the same synthetic Opus and
// VP8 payloads, sizes, rates and simulcast layers confclient publishes to
// poosms), and what arrives is counted here as confclient counts it.
type lkClient struct {
	room  *lksdk.Room
	name  string
	audio *lksdk.LocalTrack
	video []*lksdk.LocalTrack // one, or one per layer (h, m, l as LiveKit's f, h, q)

	keyReqs atomic.Int64 // PLIs from the server

	mu     sync.Mutex
	tracks map[string]*lkTrack
	wg     sync.WaitGroup
}

type lkTrack struct {
	t      confclient.Track
	lastTS uint32
}

// quietSDK silences the SDK's own logging (every state change of every
// peer connection), once.
var quietSDK sync.Once

// joinLiveKit joins room as identity name, publishing if publisher.
func joinLiveKit(ctx context.Context, o mediaOptions, room, name string, publisher bool) (*lkClient, error) {
	quietSDK.Do(func() { lksdk.SetLogger(protoLogger.GetDiscardLogger()) })
	tok := auth.NewAccessToken(o.lkKey, o.lkSecret)
	tok.SetIdentity(name).SetValidFor(time.Hour).SetVideoGrant(&auth.VideoGrant{RoomJoin: true, Room: room})
	jwt, err := tok.ToJWT()
	if err != nil {
		return nil, fmt.Errorf("livekit token: %w", err)
	}
	c := &lkClient{name: name, tracks: map[string]*lkTrack{}}
	cb := lksdk.NewRoomCallback()
	cb.ParticipantCallback.OnTrackSubscribed = c.onTrack
	r, err := lksdk.ConnectToRoomWithToken(o.lkURL, jwt, cb, lksdk.WithAutoSubscribe(true))
	if err != nil {
		return nil, fmt.Errorf("livekit join %s as %s: %w", room, name, err)
	}
	c.room = r
	if !publisher {
		return c, nil
	}
	if err := c.publish(o.simulcast); err != nil {
		r.Disconnect()
		return nil, err
	}
	return c, nil
}

func (c *lkClient) publish(simulcast bool) error {
	onRTCP := lksdk.WithRTCPHandler(func(p rtcp.Packet) {
		switch p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			c.keyReqs.Add(1)
		}
	})
	a, err := lksdk.NewLocalTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2})
	if err != nil {
		return err
	}
	if _, err := c.room.LocalParticipant.PublishTrack(a, &lksdk.TrackPublicationOptions{Name: "audio", Source: livekit.TrackSource_MICROPHONE}); err != nil {
		return fmt.Errorf("livekit publish audio: %w", err)
	}
	c.audio = a
	vp8 := webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
	opts := &lksdk.TrackPublicationOptions{Name: "video", Source: livekit.TrackSource_CAMERA, VideoWidth: 640, VideoHeight: 480}
	if !simulcast {
		v, err := lksdk.NewLocalTrack(vp8, onRTCP)
		if err != nil {
			return err
		}
		if _, err := c.room.LocalParticipant.PublishTrack(v, opts); err != nil {
			return fmt.Errorf("livekit publish video: %w", err)
		}
		c.video = []*lksdk.LocalTrack{v}
		return nil
	}
	layers := []*livekit.VideoLayer{
		{Quality: livekit.VideoQuality_HIGH, Width: 640, Height: 480, Bitrate: 360_000},
		{Quality: livekit.VideoQuality_MEDIUM, Width: 320, Height: 240, Bitrate: 120_000},
		{Quality: livekit.VideoQuality_LOW, Width: 160, Height: 120, Bitrate: 32_000},
	}
	for _, l := range layers {
		v, err := lksdk.NewLocalTrack(vp8, lksdk.WithSimulcast("video-"+c.name, l), onRTCP)
		if err != nil {
			return err
		}
		c.video = append(c.video, v)
	}
	if _, err := c.room.LocalParticipant.PublishSimulcastTrack(c.video, opts); err != nil {
		return fmt.Errorf("livekit publish simulcast video: %w", err)
	}
	return nil
}

// onTrack counts what arrives on one subscribed track.
func (c *lkClient) onTrack(tr *webrtc.TrackRemote, pub *lksdk.RemoteTrackPublication, rp *lksdk.RemoteParticipant) {
	c.wg.Add(1)
	defer c.wg.Done()
	t := &lkTrack{t: confclient.Track{Participant: rp.Identity(), ID: pub.SID(), Mime: tr.Codec().MimeType}}
	clock := tr.Codec().ClockRate
	c.mu.Lock()
	c.tracks[pub.SID()] = t
	c.mu.Unlock()
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		now := time.Now()
		c.mu.Lock()
		if t.t.Packets > 0 && pkt.SequenceNumber != t.t.LastSeq+1 {
			t.t.Gaps++
		}
		if t.t.Packets > 0 && clock > 0 {
			sent := time.Duration(int64(int32(pkt.Timestamp-t.lastTS)) * int64(time.Second) / int64(clock))
			d := now.Sub(t.t.Last) - sent
			if d < 0 {
				d = -d
			}
			t.t.Jitter += (d - t.t.Jitter) / 16
		}
		t.lastTS = pkt.Timestamp
		if t.t.Packets == 0 {
			t.t.First = now
		}
		t.t.Packets++
		t.t.Bytes += len(pkt.Payload)
		t.t.LastSeq, t.t.Last = pkt.SequenceNumber, now
		c.mu.Unlock()
	}
}

// WaitConnected returns at once: ConnectToRoomWithToken returns connected.
func (c *lkClient) WaitConnected(context.Context) error { return nil }

// Tracks is what arrived so far, per subscribed track.
func (c *lkClient) Tracks() []confclient.Track {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]confclient.Track, 0, len(c.tracks))
	for _, t := range c.tracks {
		out = append(out, t.t)
	}
	return out
}

// Publish sends what confclient.Client.Publish sends, every 20 ms.
func (c *lkClient) Publish(keyEvery int) stopper {
	return confclient.Publisher{
		Name: c.name, Audio: c.audio != nil, VideoLayers: len(c.video),
		KeyEvery: keyEvery, KeyRequests: c.keyReqs.Load,
	}.Start(c)
}

// WriteRTP sends a packet of the publisher loop on the SDK's track.
func (c *lkClient) WriteRTP(kind webrtc.RTPCodecType, layer int, p *rtp.Packet) error {
	if kind == webrtc.RTPCodecTypeAudio {
		return c.audio.WriteRTP(p, nil)
	}
	return c.video[layer].WriteRTP(p, nil)
}

// Close leaves the room and waits for the track readers.
func (c *lkClient) Close() {
	c.room.Disconnect()
	c.wg.Wait()
}
