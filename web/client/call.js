// A conference call over urn:poosms:conference:0 (docs/protocol.md): one
// RTCPeerConnection to the server carries our microphone and camera and
// everyone else's tracks. The client is the polite side of negotiation.

import { NS, x, child } from './xmpp.js';
import { t } from './i18n.js';

// Simulcast layers we publish, best first; the server picks one per
// subscriber from its bandwidth.
const LAYERS = [
  { rid: 'h', maxBitrate: 900000 },
  { rid: 'm', scaleResolutionDownBy: 2, maxBitrate: 300000 },
  { rid: 'l', scaleResolutionDownBy: 4, maxBitrate: 100000 },
];

// trace keeps the last signalling steps with their times, for diagnosis
// (window.poosmsTrace in the console).
const trace = [];
globalThis.poosmsTrace = trace;
function note(...what) {
  trace.push(`${(performance.now() / 1000).toFixed(2)} ${what.join(' ')}`);
  if (trace.length > 300) trace.shift();
}

// Call events (EventTarget):
//   change   something in participants, speaker or local state changed
//   ended    {detail: {text, reason}} the call is over; reason is the
//            server's participant-left reason when it removed us
//   notice   {detail: text} something the person should know
export class Call extends EventTarget {
  // video false: a voice call (microphone only).
  constructor(conn, room, { video = true } = {}) {
    super();
    this.conn = conn;
    this.room = room;
    this.video = video;
    // id -> {id, occupant (room/nick), jid (real, when the room shows it), stream, tracks: Map(trackId -> info)}
    this.participants = new Map();
    this.gone = new Set(); // ids of participants who left; late tracks of theirs are ignored
    this.early = new Map(); // participant id -> tracks that came before any event about them
    this.speaker = null;
    this.self = null;
    this.local = null;
    this.muted = false;
    this.cameraOff = false;
    this.sharing = null;
    this.queue = Promise.resolve();
    this.ended = false;
    this.onStanza = (ev) => this.event(ev.detail);
  }

  // start asks for camera and microphone, joins and publishes.
  async start() {
    this.local = await this.getMedia();
    note('join', this.room);
    const joined = child(await this.conn.iq('set', this.room, x('join', { xmlns: NS.conf })), 'joined', NS.conf);
    this.self = joined.getAttribute('participant');
    note('joined as', this.self);
    const iceServers = [];
    for (const s of joined.children) {
      if (s.localName === 'ice-server') {
        const srv = { urls: s.getAttribute('urls').split(/\s+/).filter(Boolean) };
        if (s.hasAttribute('username')) { srv.username = s.getAttribute('username'); srv.credential = s.getAttribute('credential'); }
        iceServers.push(srv);
      } else if (s.localName === 'participant') {
        this.participant(s.getAttribute('id'), s.getAttribute('occupant'), s.getAttribute('jid'));
      } else if (s.localName === 'active-speaker') {
        this.speaker = s.getAttribute('participant');
      }
    }
    this.conn.addEventListener('stanza', this.onStanza);
    this.conn.onIq(NS.conf, 'offer', (iq, el) => this.serialize(() => this.serverOffer(el)));
    this.conn.onIq(NS.conf, 'candidate', (iq, el) => this.serialize(() => this.remoteCandidate(el)));
    this.conn.onIq(NS.conf, 'end-of-candidates', () => '');

    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
    this.pc = pc;
    pc.onicecandidate = (ev) => {
      const c = ev.candidate;
      if (this.ended) return;
      if (!c || !c.candidate) {
        this.conn.iq('set', this.room, x('end-of-candidates', { xmlns: NS.conf })).catch(() => {});
        return;
      }
      this.conn.iq('set', this.room, x('candidate', {
        xmlns: NS.conf, mid: c.sdpMid ?? undefined, mline: c.sdpMLineIndex ?? undefined, ufrag: c.usernameFragment ?? undefined,
      }, c.candidate)).catch(() => {});
    };
    pc.ontrack = (ev) => {
      const pid = ev.streams[0]?.id;
      if (!pid || pid === this.self || this.gone.has(pid)) return;
      // Tracks belong to participants the events told us about; a track
      // whose participant is not known (yet) waits for its event.
      if (!this.participants.has(pid)) {
        note('track before its participant', pid);
        if (!this.early.has(pid)) this.early.set(pid, []);
        this.early.get(pid).push(ev.track);
        return;
      }
      this.addTrack(this.participants.get(pid), ev.track);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') this.notice(t('callMediaFailed'));
      this.changed();
    };
    const audio = this.local.getAudioTracks()[0];
    const video = this.local.getVideoTracks()[0];
    if (audio) this.audioSender = pc.addTransceiver(audio, { direction: 'sendonly', streams: [this.local] }).sender;
    if (video) {
      const simulcast = !new URLSearchParams(location.search).has('nosimulcast');
      this.videoSender = pc.addTransceiver(video, {
        direction: 'sendonly', streams: [this.local], sendEncodings: simulcast ? LAYERS : undefined,
      }).sender;
    }
    if (!audio && !video) pc.addTransceiver('audio', { direction: 'recvonly' });
    await this.serialize(() => this.offer());
    this.changed();
  }

  async getMedia() {
    const want = { audio: true, video: this.video ? { width: { ideal: 640 }, height: { ideal: 480 } } : false };
    try {
      return await navigator.mediaDevices.getUserMedia(want);
    } catch (e) {
      if (e.name === 'NotAllowedError' || e.name === 'SecurityError') {
        this.notice(t('callDenied'));
        return new MediaStream();
      }
      // No camera (or it is busy): try the microphone alone.
      try {
        const s = await navigator.mediaDevices.getUserMedia({ audio: true });
        if (this.video) this.notice(t('callNoCamera'));
        return s;
      } catch {
        this.notice(t('callNoDevices'));
        return new MediaStream();
      }
    }
  }

  // serialize runs signalling steps one after another, in the order the
  // server sent them.
  serialize(fn) {
    const p = this.queue.then(fn);
    this.queue = p.catch(() => {});
    return p;
  }

  async offer() {
    if (this.ended) return;
    const pc = this.pc;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    note('offer sent');
    try {
      const res = await this.conn.iq('set', this.room, x('offer', { xmlns: NS.conf }, pc.localDescription.sdp));
      const ans = child(res, 'answer', NS.conf);
      note('answer received');
      if (pc.signalingState === 'have-local-offer') await pc.setRemoteDescription({ type: 'answer', sdp: ans.textContent });
      note('answer applied');
    } catch (e) {
      note('offer failed', e.condition || e.message);
      if (e.condition === 'unexpected-request') {
        // Glare: the server's offer is on its way; give way and offer again after it.
        if (pc.signalingState === 'have-local-offer') await pc.setLocalDescription({ type: 'rollback' });
        this.offerAgain = true;
        return;
      }
      throw e;
    }
  }

  async serverOffer(el) {
    const pc = this.pc;
    if (!pc || this.ended) throw Object.assign(new Error('no call'), { condition: 'item-not-found' });
    note('server offer', 'state', pc.signalingState);
    if (pc.signalingState === 'have-local-offer') {
      await pc.setLocalDescription({ type: 'rollback' });
      this.offerAgain = true;
    }
    await pc.setRemoteDescription({ type: 'offer', sdp: el.textContent });
    await pc.setLocalDescription(await pc.createAnswer());
    note('server offer answered');
    if (this.offerAgain) {
      this.offerAgain = false;
      queueMicrotask(() => this.serialize(() => this.offer()).catch((e) => this.notice(t('publishFailed', e.message))));
    }
    return x('answer', { xmlns: NS.conf }, pc.localDescription.sdp);
  }

  async remoteCandidate(el) {
    const text = el.textContent.trim();
    const mline = el.getAttribute('mline');
    try {
      await this.pc.addIceCandidate({
        candidate: text.startsWith('candidate:') ? text : 'candidate:' + text,
        sdpMid: el.getAttribute('mid') ?? (mline === null ? '0' : null),
        sdpMLineIndex: mline === null ? null : Number(mline),
        usernameFragment: el.getAttribute('ufrag') ?? undefined,
      });
    } catch (e) {
      note('candidate refused', e.message);
    }
    return '';
  }

  addTrack(p, track) {
    p.stream.addTrack(track);
    track.onended = () => { p.stream.removeTrack(track); this.changed(); };
    this.changed();
  }

  participant(id, occupant, jid) {
    let p = this.participants.get(id);
    if (!p) {
      p = { id, occupant: '', jid: '', stream: new MediaStream(), tracks: new Map() };
      this.participants.set(id, p);
      for (const t of this.early.get(id) || []) this.addTrack(p, t);
      this.early.delete(id);
    }
    if (occupant) p.occupant = occupant;
    if (jid) p.jid = jid;
    return p;
  }

  event(el) {
    if (el.localName !== 'message' || el.getAttribute('type') !== 'headline') return;
    if ((el.getAttribute('from') || '') !== this.room) return;
    const ev = el.firstElementChild;
    if (!ev || ev.namespaceURI !== NS.conf) return;
    const a = (n) => ev.getAttribute(n);
    switch (ev.localName) {
      case 'participant-joined':
        this.participant(a('id'), a('occupant'), a('jid'));
        break;
      case 'participant-changed': // a new nickname in the room
        if (!this.participants.has(a('id'))) return;
        this.participant(a('id'), a('occupant'), a('jid'));
        break;
      case 'participant-left':
        if (a('id') === this.self) {
          note('removed', a('reason'));
          this.stop(a('reason') === 'replaced' ? t('callReplaced') : t('callRemoved', a('reason')), a('reason'));
          return;
        }
        this.participants.delete(a('id'));
        this.gone.add(a('id'));
        break;
      case 'track-published':
        if (a('participant') !== this.self && !this.gone.has(a('participant'))) this.participant(a('participant')).tracks.set(a('id'), { kind: a('kind'), layers: a('layers') });
        break;
      case 'track-removed': {
        const p = this.participants.get(a('participant'));
        if (p) {
          p.tracks.delete(a('id'));
          for (const t of p.stream.getTracks()) if (t.id === a('id')) p.stream.removeTrack(t);
        }
        break;
      }
      case 'active-speaker':
        this.speaker = a('participant');
        break;
      default:
        return;
    }
    this.changed();
  }

  setMuted(m) {
    this.muted = m;
    for (const t of this.local.getAudioTracks()) t.enabled = !m;
    this.changed();
  }

  setCameraOff(off) {
    this.cameraOff = off;
    for (const t of this.local.getVideoTracks()) t.enabled = !off;
    this.changed();
  }

  async toggleScreen() {
    if (!this.videoSender) {
      this.notice(t('screenNeedsCamera'));
      return;
    }
    if (this.sharing) {
      this.sharing.stop();
      this.sharing = null;
      await this.videoSender.replaceTrack(this.local.getVideoTracks()[0] || null);
      this.changed();
      return;
    }
    let s;
    try {
      s = await navigator.mediaDevices.getDisplayMedia({ video: true });
    } catch {
      this.notice(t('screenRefused'));
      return;
    }
    const t = s.getVideoTracks()[0];
    this.sharing = t;
    t.onended = () => { if (this.sharing === t) this.toggleScreen(); };
    await this.videoSender.replaceTrack(t);
    this.changed();
  }

  async leave() {
    if (this.ended) return;
    note('leave');
    try { await this.conn.iq('set', this.room, x('leave', { xmlns: NS.conf }), 5000); } catch { /* closing anyway */ }
    this.stop(t('callLeft'));
  }

  stop(text, reason = '') {
    if (this.ended) return;
    this.ended = true;
    note('ended', reason || text);
    this.conn.removeEventListener('stanza', this.onStanza);
    this.pc?.close();
    for (const t of this.local?.getTracks() || []) t.stop();
    this.sharing?.stop();
    this.dispatchEvent(new CustomEvent('ended', { detail: { text, reason } }));
  }

  notice(text) { this.dispatchEvent(new CustomEvent('notice', { detail: text })); }
  changed() { this.dispatchEvent(new Event('change')); }
}
