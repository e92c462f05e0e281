// XMPP over WebSocket (RFC 7395) for the poosms browser client: SCRAM-SHA-256
// login through WebCrypto, resource binding, stream management (XEP-0198)
// with resumption, client state indication (XEP-0352) and IQ tracking.

import { t as tr } from './i18n.js';

export const NS = {
  client: 'jabber:client',
  framing: 'urn:ietf:params:xml:ns:xmpp-framing',
  sasl: 'urn:ietf:params:xml:ns:xmpp-sasl',
  bind: 'urn:ietf:params:xml:ns:xmpp-bind',
  sm: 'urn:xmpp:sm:3',
  csi: 'urn:xmpp:csi:0',
  stanzas: 'urn:ietf:params:xml:ns:xmpp-stanzas',
  roster: 'jabber:iq:roster',
  ping: 'urn:xmpp:ping',
  delay: 'urn:xmpp:delay',
  chatstates: 'http://jabber.org/protocol/chatstates',
  receipts: 'urn:xmpp:receipts',
  muc: 'http://jabber.org/protocol/muc',
  mucUser: 'http://jabber.org/protocol/muc#user',
  mucOwner: 'http://jabber.org/protocol/muc#owner',
  mucAdmin: 'http://jabber.org/protocol/muc#admin',
  conf: 'urn:poosms:conference:0',
  disco: 'http://jabber.org/protocol/disco#info',
  mam: 'urn:xmpp:mam:2',
  forward: 'urn:xmpp:forward:0',
  rsm: 'http://jabber.org/protocol/rsm',
  data: 'jabber:x:data',
  discoItems: 'http://jabber.org/protocol/disco#items',
  carbons: 'urn:xmpp:carbons:2',
  oob: 'jabber:x:oob',
  upload: 'urn:xmpp:http:upload:0',
  search: 'jabber:iq:search',
  register: 'jabber:iq:register',
  vcard: 'vcard-temp',
  vcardUpdate: 'vcard-temp:x:update',
  pubsub: 'http://jabber.org/protocol/pubsub',
  pubsubEvent: 'http://jabber.org/protocol/pubsub#event',
  avatarData: 'urn:xmpp:avatar:data',
  avatarMeta: 'urn:xmpp:avatar:metadata',
  nick: 'http://jabber.org/protocol/nick',
  attention: 'urn:xmpp:attention:0',
  reactions: 'urn:xmpp:reactions:0',
  correct: 'urn:xmpp:message-correct:0',
  retract: 'urn:xmpp:message-retract:1',
  retract0: 'urn:xmpp:message-retract:0',
  fasten: 'urn:xmpp:fasten:0',
  fallback: 'urn:xmpp:fallback:0',
  hints: 'urn:xmpp:hints',
  sid: 'urn:xmpp:sid:0',
  jmi: 'urn:xmpp:jingle-message:0',
  jingle: 'urn:xmpp:jingle:1',
  bookmarks: 'urn:xmpp:bookmarks:1',
  xconference: 'jabber:x:conference',
};

// esc escapes text for XML content and attribute values.
export function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]);
}

// x builds an XML string: x('iq', {type: 'get'}, x('query', {xmlns: NS.roster})).
// Attributes whose value is undefined or null are left out; string
// children are escaped text, children made by x are kept as they are.
export function x(name, attrs = {}, ...children) {
  let s = '<' + name;
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) s += ' ' + k + '="' + esc(v) + '"';
  }
  const body = children.flat().filter((c) => c !== undefined && c !== null && c !== false)
    .map((c) => (c instanceof Raw || c?.isRawXML === true ? c.s : esc(c))).join('');
  return new Raw(body ? s + '>' + body + '</' + name + '>' : s + '/>');
}

// Raw is built XML; isRawXML lets a copy of this module loaded under
// another address (the page's files are also served unversioned) pass it.
class Raw {
  constructor(s) { this.s = s; this.isRawXML = true; }
  toString() { return this.s; }
}

// child returns the first child element of el with the given local name
// (and namespace, when given).
export function child(el, name, ns) {
  if (!el) return null;
  for (const c of el.children) {
    if (c.localName === name && (!ns || c.namespaceURI === ns)) return c;
  }
  return null;
}

export function bare(j) { return (j || '').split('/')[0]; }
export function resourceOf(j) { const i = (j || '').indexOf('/'); return i < 0 ? '' : j.slice(i + 1); }
export function localOf(j) { const b = bare(j); const i = b.indexOf('@'); return i < 0 ? b : b.slice(0, i); }

let idSeq = 0;
export function newId(prefix = 'c') {
  return prefix + (++idSeq).toString(36) + Math.random().toString(36).slice(2, 8);
}

// StanzaError is how a failed IQ rejects.
export class StanzaError extends Error {
  constructor(condition, text, type, el) {
    super(text || condition);
    this.condition = condition;
    this.type = type;
    this.el = el; // the <error/> element, for application conditions
  }
}

function stanzaError(el) {
  const e = child(el, 'error');
  if (!e) return new StanzaError('undefined-condition', '');
  let cond = 'undefined-condition';
  let text = '';
  for (const c of e.children) {
    if (c.namespaceURI !== NS.stanzas) continue;
    if (c.localName === 'text') text = c.textContent;
    else cond = c.localName;
  }
  return new StanzaError(cond, text, e.getAttribute('type'), e);
}

// ---- SCRAM-SHA-256 (RFC 5802, RFC 7677) through WebCrypto ----

const enc = new TextEncoder();
const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

async function hmac(key, data) {
  const k = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, typeof data === 'string' ? enc.encode(data) : data));
}

// scramKeys derives ClientKey and ServerKey from a password; these, not
// the password, are what "remember me" keeps.
export async function scramKeys(password, salt, iterations) {
  const pw = await crypto.subtle.importKey('raw', enc.encode(password.normalize('NFKC')), 'PBKDF2', false, ['deriveBits']);
  const salted = new Uint8Array(await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, pw, 256));
  return { clientKey: await hmac(salted, 'Client Key'), serverKey: await hmac(salted, 'Server Key') };
}

function saslName(s) { return s.replace(/=/g, '=3D').replace(/,/g, '=2C'); }

// Scram runs one SCRAM-SHA-256 exchange. creds is {username, password} or
// {username, keys: {salt, iterations, clientKey, serverKey}} (base64).
class Scram {
  constructor(creds) {
    this.creds = creds;
    const r = new Uint8Array(18);
    crypto.getRandomValues(r);
    this.cnonce = b64(r).replace(/[+/=]/g, 'x');
    this.bare = 'n=' + saslName(creds.username) + ',r=' + this.cnonce;
  }
  first() { return btoa('n,,' + this.bare); }
  async final(challenge) {
    const serverFirst = atob(challenge);
    const attrs = Object.fromEntries(serverFirst.split(',').map((kv) => [kv[0], kv.slice(2)]));
    if (!attrs.r || !attrs.r.startsWith(this.cnonce)) throw new Error(tr('badNonce'));
    const salt = unb64(attrs.s);
    const iterations = Number(attrs.i);
    if (!(iterations >= 4096)) throw new Error(tr('fewIterations'));
    let keys = this.creds.keys;
    if (!keys || keys.salt !== attrs.s || keys.iterations !== iterations) {
      if (!this.creds.password) throw new StanzaError('not-authorized', tr('savedLoginExpired'));
      const k = await scramKeys(this.creds.password, salt, iterations);
      keys = { salt: attrs.s, iterations, clientKey: b64(k.clientKey), serverKey: b64(k.serverKey) };
    }
    this.keys = keys;
    const clientKey = unb64(keys.clientKey);
    const storedKey = new Uint8Array(await crypto.subtle.digest('SHA-256', clientKey));
    const without = 'c=biws,r=' + attrs.r;
    this.authMessage = this.bare + ',' + serverFirst + ',' + without;
    const sig = await hmac(storedKey, this.authMessage);
    const proof = clientKey.map((b, i) => b ^ sig[i]);
    return btoa(without + ',p=' + b64(proof));
  }
  async verify(success) {
    const v = atob(success || '');
    if (!v.startsWith('v=')) throw new Error(tr('serverNoProof'));
    const want = b64(await hmac(unb64(this.keys.serverKey), this.authMessage));
    if (v.slice(2) !== want) throw new Error(tr('serverBadProof'));
  }
}

// ---- the connection ----

// Connection is one logged-in account. Events (EventTarget):
//   status  {detail: {state, message}}   state: connecting, online, reconnecting, offline
//   stanza  {detail: Element}            every message and presence
//   acked   {detail: id}                 the server confirmed an outgoing stanza (XEP-0198)
//   resumed {detail: {resumed: bool}}    a dropped connection came back; resumed false
//                                        means a new session (send presence again)
export class Connection extends EventTarget {
  constructor({ url, domain }) {
    super();
    this.url = url;
    this.domain = domain;
    this.jid = '';
    this.iqs = new Map();
    this.handlers = new Map(); // "ns localName" -> fn(iq, payload) returning reply children or null
    this.h = 0; // inbound stanzas handled
    this.outCount = 0; // outbound stanzas sent since enable
    this.unacked = []; // [{n, xml, id}]
    this.smId = null;
    this.wanted = false;
    this.retry = 0;
    this.inactive = false;
    this.onIq(NS.ping, 'ping', () => '');
  }

  // login connects and authenticates; it rejects with a message a person
  // can read when the password is wrong.
  async login(creds) {
    this.creds = creds;
    this.wanted = true;
    this.emitStatus('connecting', tr('connecting'));
    try {
      await this.session(false);
    } catch (e) {
      this.wanted = false;
      this.ws?.close();
      this.emitStatus('offline', e.message);
      throw e;
    }
    return this.creds.keys;
  }

  logout() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.raw(x('presence', { type: 'unavailable' }));
      this.raw(x('close', { xmlns: NS.framing }));
    }
    this.ws?.close();
    this.emitStatus('offline', '');
  }

  // closeNow ends the stream at once as the page goes away, so the server
  // does not keep the session waiting to be resumed.
  closeNow() {
    this.wanted = false;
    clearTimeout(this.retryTimer);
    if (this.ws?.readyState === WebSocket.OPEN) this.raw(x('close', { xmlns: NS.framing }));
  }

  emitStatus(state, message) {
    this.state = state;
    this.dispatchEvent(new CustomEvent('status', { detail: { state, message } }));
  }

  // session opens a WebSocket, authenticates and either binds or resumes.
  async session(resume) {
    const ws = new WebSocket(this.url, 'xmpp');
    this.ws = ws;
    const frames = [];
    let waiter = null;
    let closed = null;
    const next = (ms = 30000) => new Promise((resolve, reject) => {
      if (frames.length) return resolve(frames.shift());
      if (closed) return reject(closed);
      const t = setTimeout(() => reject(new Error(tr('noAnswer'))), ms);
      waiter = { resolve: (f) => { clearTimeout(t); resolve(f); }, reject: (e) => { clearTimeout(t); reject(e); } };
    });
    let negotiating = true;
    ws.onmessage = (ev) => {
      const el = parse(ev.data);
      if (!el) return;
      if (negotiating) {
        if (waiter) { const w = waiter; waiter = null; w.resolve(el); } else frames.push(el);
      } else this.receive(el);
    };
    ws.onclose = () => {
      closed = new Error(tr('connectionLost'));
      if (waiter) { const w = waiter; waiter = null; w.reject(closed); }
      if (!negotiating && this.ws === ws) this.dropped();
    };
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error(tr('cannotReach')));
    });
    const open = async () => {
      this.raw(x('open', { xmlns: NS.framing, to: this.domain, version: '1.0' }));
      let f = await next();
      if (f.localName === 'open') f = await next();
      if (f.localName === 'error') throw new Error(tr('streamClosed') + ' ' + (f.firstElementChild?.localName || 'error'));
      return f;
    };
    let features = await open();
    const mechs = [...(child(features, 'mechanisms')?.children || [])].map((m) => m.textContent);
    if (!mechs.includes('SCRAM-SHA-256')) throw new Error(tr('noSecureLogin'));
    const scram = new Scram(this.creds);
    this.raw(x('auth', { xmlns: NS.sasl, mechanism: 'SCRAM-SHA-256' }, scram.first()));
    let f = await next();
    if (f.localName === 'challenge') {
      this.raw(x('response', { xmlns: NS.sasl }, await scram.final(f.textContent)));
      f = await next();
    }
    if (f.localName !== 'success') {
      const cond = f.firstElementChild?.localName;
      if (cond === 'temporary-auth-failure') throw new Error(tr('tooManyLogins'));
      throw new StanzaError('not-authorized', tr('wrongPassword'));
    }
    await scram.verify(f.textContent);
    this.creds.keys = scram.keys;
    features = await open();
    this.features = features;
    this.csi = !!child(features, 'csi', NS.csi);
    const canSM = !!child(features, 'sm', NS.sm);
    let resumed = false;
    if (resume && canSM && this.smId) {
      this.raw(x('resume', { xmlns: NS.sm, previd: this.smId, h: this.h }));
      const r = await next();
      if (r.localName === 'resumed') {
        resumed = true;
        negotiating = false;
        this.ackedUpTo(Number(r.getAttribute('h')));
        const again = this.unacked;
        this.unacked = [];
        this.resend(again);
        for (const el of frames.splice(0)) this.receive(el);
      }
    }
    if (!resumed) {
      const iqId = newId('b');
      this.raw(x('iq', { type: 'set', id: iqId }, x('bind', { xmlns: NS.bind }, x('resource', {}, 'web-' + Math.random().toString(36).slice(2, 8)))));
      const b = await next();
      if (b.getAttribute('type') !== 'result') throw new Error(tr('bindRefused'));
      this.jid = child(child(b, 'bind'), 'jid').textContent;
      const lost = resume ? this.unacked : [];
      this.unacked = [];
      this.h = 0;
      this.outCount = 0;
      this.smId = null;
      this.sm = false;
      if (canSM) {
        this.raw(x('enable', { xmlns: NS.sm, resume: 'true' }));
        const en = await next();
        if (en.localName === 'enabled') {
          this.smId = en.getAttribute('resume') === 'true' || en.getAttribute('resume') === '1' ? en.getAttribute('id') : null;
          this.sm = true;
        }
      }
      negotiating = false;
      for (const el of frames.splice(0)) this.receive(el);
      // Messages the old session never confirmed are sent again.
      this.resend(lost.filter((u) => u.xml.startsWith('<message')));
    }
    this.retry = 0;
    if (this.inactive && this.csi) this.raw(x('inactive', { xmlns: NS.csi }));
    this.emitStatus('online', resume ? tr('reconnected') : tr('online'));
    if (resume) this.dispatchEvent(new CustomEvent('resumed', { detail: { resumed } }));
    this.startPing();
  }

  dropped() {
    clearInterval(this.pingTimer);
    if (!this.wanted) return;
    this.emitStatus('reconnecting', tr('reconnecting'));
    const delay = Math.min(1000 * 2 ** this.retry, 30000) * (0.5 + Math.random() / 2);
    this.retry++;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(async () => {
      try {
        await this.session(true);
      } catch (e) {
        if (e instanceof StanzaError) { // the password changed: give up
          this.wanted = false;
          this.emitStatus('offline', e.message);
          return;
        }
        this.ws?.close();
        if (this.ws) this.ws.onclose = null;
        this.dropped();
      }
    }, delay);
  }

  // drop closes the socket as a network failure would (for tests and
  // the "reconnect now" button).
  drop() { this.ws?.close(); }

  startPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (this.state !== 'online') return;
      this.iq('get', this.domain, x('ping', { xmlns: NS.ping }), 20000).catch((e) => {
        if (e.condition === 'timeout') this.ws?.close();
      });
    }, 60000);
  }

  raw(s) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(String(s));
  }

  // send sends a stanza (an x() value or string); with stream management
  // it is kept until the server acknowledges it and an "acked" event
  // with id follows.
  send(stanza, id) {
    const xml = String(stanza);
    if (this.sm || this.state === 'reconnecting') {
      this.outCount++;
      this.unacked.push({ n: this.outCount, xml, id });
    }
    if (this.state === 'online') {
      this.raw(xml);
      if (this.sm) this.requestAck();
    }
  }

  resend(list) {
    for (const u of list) {
      if (this.sm) {
        this.outCount++;
        this.unacked.push({ n: this.outCount, xml: u.xml, id: u.id });
      }
      this.raw(u.xml);
    }
    if (list.length && this.sm) this.requestAck();
  }

  requestAck() {
    if (this.ackPending) return;
    this.ackPending = true;
    queueMicrotask(() => { this.ackPending = false; this.raw(x('r', { xmlns: NS.sm })); });
  }

  ackedUpTo(h) {
    // h counts stanzas the server handled since enable; map it onto ours.
    while (this.unacked.length && this.unacked[0].n <= h) {
      const u = this.unacked.shift();
      if (u.id) this.dispatchEvent(new CustomEvent('acked', { detail: u.id }));
    }
  }

  // iq sends an IQ and resolves with the result element. Only an answer
  // from the entity it was sent to settles it (see answeredBy), so
  // someone else who guesses the id cannot.
  iq(type, to, payload, timeout = 30000) {
    const id = newId('q');
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.iqs.delete(id);
        reject(new StanzaError('timeout', tr('noAnswer')));
      }, timeout);
      this.iqs.set(id, { to, resolve: (r) => { clearTimeout(t); resolve(r); }, reject: (e) => { clearTimeout(t); reject(e); } });
      this.send(x('iq', { type, to, id }, payload));
    });
  }

  // answeredBy says whether an IQ result or error from `from` answers an
  // IQ sent to `to` (RFC 6120 §8.2.3): the addressee answers; an IQ
  // without `to`, or to the account's own bare JID, is answered by the
  // server for the account, with no from or the account's own JID.
  // Domain and local parts compare without case, resources exactly.
  answeredBy(to, from) {
    const norm = (j) => {
      const i = (j || '').indexOf('/');
      return i < 0 ? (j || '').toLowerCase() : j.slice(0, i).toLowerCase() + j.slice(i);
    };
    const self = norm(bare(this.jid));
    if (!to || norm(to) === self) return !from || norm(from) === self || norm(from) === norm(this.jid);
    return !!from && norm(from) === norm(to);
  }

  // onIq serves incoming get/set IQs whose payload is ns localName. fn
  // returns the result's children ('' for none), or a Promise of them;
  // throwing a StanzaError answers with that error.
  onIq(ns, name, fn) { this.handlers.set(ns + ' ' + name, fn); }

  receive(el) {
    if (el.namespaceURI === NS.sm) {
      if (el.localName === 'r') this.raw(x('a', { xmlns: NS.sm, h: this.h }));
      else if (el.localName === 'a') this.ackedUpTo(Number(el.getAttribute('h')));
      return;
    }
    if (el.localName === 'close' && el.namespaceURI === NS.framing) { this.ws?.close(); return; }
    if (el.localName === 'error' && el.namespaceURI === 'http://etherx.jabber.org/streams') {
      if (child(el, 'conflict')) {
        this.wanted = false;
        this.emitStatus('offline', tr('loggedInElsewhere'));
      }
      return;
    }
    this.h++;
    if (el.localName === 'iq') this.receiveIq(el);
    else this.dispatchEvent(new CustomEvent('stanza', { detail: el }));
  }

  async receiveIq(el) {
    const type = el.getAttribute('type');
    const id = el.getAttribute('id');
    if (type === 'result' || type === 'error') {
      const w = this.iqs.get(id);
      if (!w || !this.answeredBy(w.to, el.getAttribute('from'))) return;
      this.iqs.delete(id);
      if (type === 'result') w.resolve(el); else w.reject(stanzaError(el));
      return;
    }
    const payload = el.firstElementChild;
    const from = el.getAttribute('from') || undefined;
    const fn = payload && this.handlers.get(payload.namespaceURI + ' ' + payload.localName);
    const reply = (...c) => this.send(x('iq', { type: 'result', id, to: from }, ...c));
    const fail = (cond, etype = 'cancel') => this.send(x('iq', { type: 'error', id, to: from },
      x('error', { type: etype }, x(cond, { xmlns: NS.stanzas }))));
    if (!fn) return fail('service-unavailable');
    try {
      const r = await fn(el, payload);
      if (r === null) return; // the handler answers by itself
      reply(r || undefined);
    } catch (e) {
      fail(e.condition || 'internal-server-error', e.type || 'cancel');
    }
  }

  // setInactive tells the server (XEP-0352) whether anyone is looking.
  setInactive(inactive) {
    this.inactive = inactive;
    if (this.csi && this.state === 'online') this.raw(x(inactive ? 'inactive' : 'active', { xmlns: NS.csi }));
  }
}

const parser = new DOMParser();
function parse(text) {
  const doc = parser.parseFromString(text, 'text/xml');
  if (doc.getElementsByTagName('parsererror').length) {
    console.warn('poosms: unparsable frame', text);
    return null;
  }
  return doc.documentElement;
}
