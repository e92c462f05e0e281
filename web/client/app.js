// The poosms browser client: login and sign-up, contacts with presence,
// profiles and avatars, one-to-one chat with files, reactions, edits and
// nudges, rooms kept as bookmarks, conference calls in rooms and private
// one-to-one calls, notifications. Modules: xmpp.js (the connection),
// call.js (a conference), people.js (profiles, directory), files.js
// (upload), emoji.js, alerts.js (notifications, sounds), i18n.js.

import { Connection, NS, x, child, bare, localOf, resourceOf, newId, StanzaError } from './xmpp.js';
import { Call } from './call.js';
import { t, translate, setLang, initialLang, languages, lang } from './i18n.js';
import { $, el, banner, meta, DOMAIN, CONFERENCE } from './ui.js';
import * as people from './people.js';
import { Upload, fileMessage, fileOf, describe, shownInline, sizeOf } from './files.js';
import { EMOJI, REACTIONS, emoticons, validReaction, picker, emojiName } from './emoji.js';
import * as alerts from './alerts.js';

const REMEMBER = 'poosms.remember';
const NUDGE_EVERY = 10000; // at most one nudge each way per contact in this time
const RING_FOR = 30000; // an unanswered call ends after this

const SHOW_KEYS = { available: 'available', chat: 'available', away: 'away', xa: 'away', dnd: 'dnd', offline: 'offline' };
const showText = (s) => t(SHOW_KEYS[s] || 'available');

const state = {
  conn: null,
  roster: new Map(), // bare -> {jid, name, subscription, ask}
  presence: new Map(), // bare -> Map(resource -> {show, status})
  requests: new Set(),
  invites: new Map(), // room -> {room, from, reason, password, mediated}
  chats: new Map(), // bare -> {messages: [], unread, typing, calls: Map(sid -> entry)}
  rooms: new Map(), // room bare -> see newRoom
  open: null, // {kind: 'chat'|'room'|'page', jid | page}
  call: null, // the conference we are in (a room's, or a one-to-one call's room)
  one: null, // the one-to-one call: {sid, peer, peerFull, dir, video, room, phase}
  uploads: [], // {id, jid, name, progress, error, up}
  editing: null, // {jid, id} of the message being corrected
  picker: null, // {jid, id} of the message whose reaction picker is open, or 'compose'
  nudges: new Map(), // bare -> time of the last nudge sent or shown
};

// ---- languages ----

for (const sel of document.querySelectorAll('.lang-select')) {
  sel.replaceChildren(...languages.map(([c, name]) => el('option', { value: c }, name)));
  sel.onchange = () => setLang(sel.value);
}
document.addEventListener('poosms-lang', () => {
  for (const sel of document.querySelectorAll('.lang-select')) sel.value = lang();
  render();
});
setLang(initialLang(), false);

// ---- login and sign-up ----

function showTab(signup) {
  $('tab-login').setAttribute('aria-selected', String(!signup));
  $('tab-signup').setAttribute('aria-selected', String(signup));
  $('login-form').hidden = signup;
  $('signup-form').hidden = !signup;
}
$('tab-login').onclick = () => showTab(false);
$('tab-signup').onclick = () => showTab(true);
if (meta('poosms-registration') !== 'open') $('tab-signup').hidden = true;

function usernameOf(input) {
  const v = input.trim().normalize('NFC').toLowerCase();
  const at = v.lastIndexOf('@');
  return at < 0 ? v : v.slice(0, at);
}

$('login-form').onsubmit = async (ev) => {
  ev.preventDefault();
  const username = usernameOf($('login-username').value);
  const password = $('login-password').value;
  if (!username || !password) { $('login-error').textContent = t('enterBoth'); return; }
  await login({ username, password }, $('login-remember').checked);
};

$('signup-form').onsubmit = async (ev) => {
  ev.preventDefault();
  const username = $('signup-username').value.trim();
  const password = $('signup-password').value;
  const confirm = $('signup-confirm').value;
  const errBox = $('signup-error');
  errBox.textContent = '';
  const btn = ev.submitter || $('signup-form').querySelector('button[type=submit]');
  btn.disabled = true;
  try {
    // The same form and validation as /register: fetch its token, post.
    const page = await fetch('/register', { credentials: 'same-origin' });
    const doc = new DOMParser().parseFromString(await page.text(), 'text/html');
    const csrf = doc.querySelector('input[name=csrf]')?.value;
    if (!csrf) throw new Error(t('signupClosed'));
    const res = await fetch('/register', {
      method: 'POST', credentials: 'same-origin',
      body: new URLSearchParams({ csrf, username, password, confirm }),
    });
    const out = new DOMParser().parseFromString(await res.text(), 'text/html');
    if (!res.ok) {
      const items = [...out.querySelectorAll('.errors li')].map((li) => li.textContent);
      errBox.replaceChildren(el('ul', {}, (items.length ? items : [t('notCreated')]).map((s) => el('li', {}, s))));
      return;
    }
    const created = out.querySelector('dd code')?.textContent || username;
    await login({ username: localOf(created), password }, false);
  } catch (e) {
    errBox.textContent = e.message;
  } finally {
    btn.disabled = false;
  }
};

let offlineTimer;
async function login(creds, remember) {
  const err = $('login-error');
  err.textContent = '';
  clearTimeout(offlineTimer);
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const conn = new Connection({ url: `${proto}//${location.host}/xmpp-websocket`, domain: DOMAIN });
  conn.addEventListener('status', (ev) => onStatus(ev.detail));
  try {
    const keys = await conn.login(creds);
    if (remember) localStorage.setItem(REMEMBER, JSON.stringify({ username: creds.username, keys }));
  } catch (e) {
    showLogin();
    if (e instanceof StanzaError) {
      localStorage.removeItem(REMEMBER);
      err.textContent = e.message;
      return;
    }
    if (creds.keys) {
      // No network (or no server): the app still opens and says so, and
      // logs in by itself when the network is back.
      banner(t('offlineBanner'), true);
      document.body.dataset.connection = 'offline';
      const again = () => { window.removeEventListener('online', again); login(creds, remember); };
      window.addEventListener('online', again);
      offlineTimer = setTimeout(again, 10000);
      return;
    }
    err.textContent = e.message;
    return;
  }
  banner('');
  state.conn = conn;
  window.poosms = { conn, state, alerts }; // for debugging and tests
  conn.addEventListener('stanza', (ev) => onStanza(ev.detail));
  conn.addEventListener('acked', (ev) => setDelivery(ev.detail, 'sent'));
  conn.addEventListener('resumed', (ev) => { if (!ev.detail.resumed) startSession(); });
  conn.onIq(NS.roster, 'query', (iq, q) => {
    const from = iq.getAttribute('from');
    if (from && bare(from) !== bare(conn.jid)) throw new StanzaError('forbidden');
    rosterItems(q);
    return '';
  });
  people.setup(conn, () => render());
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('login-password').value = '';
  await startSession();
}

// startSession fetches the roster, profile and bookmarks and goes online
// (again after a new session).
async function startSession() {
  const conn = state.conn;
  try {
    const r = await conn.iq('get', undefined, x('query', { xmlns: NS.roster }));
    state.roster.clear();
    rosterItems(child(r, 'query', NS.roster));
  } catch (e) {
    banner(t('contactsFailed', e.message));
  }
  // Messages sent and received on this account's other devices (XEP-0280).
  conn.iq('set', undefined, x('enable', { xmlns: NS.carbons })).catch(() => {});
  await people.loadMine().catch(() => {});
  state.presence.clear();
  sendPresence();
  loadBookmarks();
  for (const [room, r] of state.rooms) if (r.joined) joinRoomChat(room);
  if (state.call) state.call.stop(t('callLostConnection'), 'stream-closed');
  render();
}

function sendPresence() {
  const show = $('my-show').value;
  const status = $('my-status').value.trim();
  state.conn.send(x('presence', {}, show && x('show', {}, show), status && x('status', {}, status), people.photoUpdate()));
  // Rooms see the new avatar too.
  for (const [room, r] of state.rooms) {
    if (r.self) state.conn.send(x('presence', { to: room + '/' + r.nick }, show && x('show', {}, show), people.photoUpdate()));
  }
}
$('my-show').onchange = sendPresence;
$('my-status').onchange = sendPresence;
$('my-status').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') $('my-status').blur(); });

$('logout').onclick = () => {
  localStorage.removeItem(REMEMBER);
  if (state.one) endOne(state.one.phase === 'active' || state.one.phase === 'connecting' ? 'hangup' : state.one.dir === 'out' ? 'cancel' : 'decline');
  state.call?.leave();
  state.conn?.logout();
  location.reload();
};

function showLogin() {
  $('login-view').hidden = false;
  $('app-view').hidden = true;
}

function onStatus({ state: s, message }) {
  document.body.dataset.connection = s;
  if (s === 'reconnecting') banner(message, true);
  else if (s === 'online' && message === t('reconnected')) banner(message);
  else if (s === 'offline' && !$('app-view').hidden && message) {
    banner(message, true);
    showLogin();
  }
}

// Leaving or reloading the page ends the session cleanly (the next page
// logs in again); otherwise it would linger, online, waiting to be resumed.
window.addEventListener('pagehide', () => state.conn?.closeNow());

document.addEventListener('visibilitychange', () => {
  state.conn?.setInactive(document.hidden);
  if (!document.hidden && state.open) markRead(state.open.jid);
});

// ---- roster and presence ----

function rosterItems(q) {
  for (const it of q?.children || []) {
    if (it.localName !== 'item') continue;
    const jid = it.getAttribute('jid');
    if (it.getAttribute('subscription') === 'remove') {
      state.roster.delete(jid);
      continue;
    }
    state.roster.set(jid, {
      jid, name: it.getAttribute('name') || '', subscription: it.getAttribute('subscription') || 'none',
      ask: it.getAttribute('ask') || '',
    });
    if (['from', 'both'].includes(it.getAttribute('subscription'))) state.requests.delete(jid);
    people.fetchProfile(jid);
  }
  render();
}

const nameOf = (jid) => people.nameOf(jid, state.roster.get(bare(jid))?.name);
const isContact = (jid) => state.roster.has(bare(jid));

function presenceOf(jid) {
  const m = state.presence.get(jid);
  if (!m || m.size === 0) return { show: 'offline', status: '' };
  const rank = { chat: 0, available: 1, away: 2, dnd: 3, xa: 4 };
  return [...m.values()].sort((a, b) => rank[a.show] - rank[b.show])[0];
}

function onPresence(p) {
  const from = p.getAttribute('from') || '';
  const type = p.getAttribute('type') || '';
  const b = bare(from);
  if (b.endsWith('@' + CONFERENCE) || state.rooms.has(b)) return roomPresence(p, b, type);
  switch (type) {
    case 'subscribe': {
      const item = state.roster.get(b);
      // Someone we asked for (or already see) may see us too.
      if (item && (item.subscription === 'to' || item.subscription === 'both' || item.ask === 'subscribe')) {
        state.conn.send(x('presence', { to: b, type: 'subscribed' }));
      } else {
        state.requests.add(b);
        people.fetchProfile(b);
      }
      break;
    }
    case 'unsubscribe': case 'subscribed': case 'unsubscribed':
      break;
    case 'unavailable': {
      const m = state.presence.get(b);
      if (m) { m.delete(resourceOf(from)); if (!resourceOf(from)) m.clear(); }
      break;
    }
    case 'error':
      break;
    case '': {
      if (b === bare(state.conn.jid)) break;
      let m = state.presence.get(b);
      if (!m) state.presence.set(b, m = new Map());
      m.set(resourceOf(from), { show: child(p, 'show')?.textContent || 'available', status: child(p, 'status')?.textContent || '' });
      people.presenceHash(b, p);
      break;
    }
  }
  render();
}

async function addContact(jid) {
  jid = jid.trim().toLowerCase();
  if (!jid) return false;
  if (!jid.includes('@')) jid += '@' + DOMAIN;
  try {
    await state.conn.iq('set', undefined, x('query', { xmlns: NS.roster }, x('item', { jid })));
    state.conn.send(x('presence', { to: jid, type: 'subscribe' }));
    banner(t('askedToShare', jid));
    people.fetchProfile(jid);
    return true;
  } catch (e) {
    banner(t('addFailed', e.message));
    return false;
  }
}

$('add-contact').onsubmit = async (ev) => {
  ev.preventDefault();
  if (await addContact($('add-jid').value)) $('add-jid').value = '';
};

function acceptRequest(jid) {
  state.conn.send(x('presence', { to: jid, type: 'subscribed' }));
  const item = state.roster.get(jid);
  if (!item || (item.subscription !== 'to' && item.subscription !== 'both')) {
    state.conn.send(x('presence', { to: jid, type: 'subscribe' }));
  }
  state.requests.delete(jid);
  render();
}

function refuseRequest(jid) {
  state.conn.send(x('presence', { to: jid, type: 'unsubscribed' }));
  state.requests.delete(jid);
  render();
}

// Removing asks once more on the button itself (no blocking dialog).
$('remove-contact').onclick = async () => {
  const jid = state.open?.jid;
  const btn = $('remove-contact');
  if (!jid) return;
  if (btn.dataset.confirm !== jid) {
    btn.dataset.confirm = jid;
    btn.textContent = t('reallyRemove', nameOf(jid));
    return;
  }
  delete btn.dataset.confirm;
  btn.textContent = t('removeContact');
  try {
    await state.conn.iq('set', undefined, x('query', { xmlns: NS.roster }, x('item', { jid, subscription: 'remove' })));
    closePane();
  } catch (e) {
    banner(t('removeFailed', e.message));
  }
};

// ---- messages ----

function chatOf(jid) {
  let c = state.chats.get(jid);
  if (!c) state.chats.set(jid, c = { messages: [], unread: 0, typing: '', calls: new Map() });
  return c;
}

// findMsg finds a message by its id, or (in rooms) by the stanza-id the
// room gave it, which other clients use for reactions and removals.
const findMsg = (c, id) => (id ? c.messages.find((m) => m.id === id || (m.sid && m.sid === id)) : null);

// retractId is the id a retraction (XEP-0424, the current form and the
// earlier one through XEP-0422) names, or null.
function retractId(s) {
  const r = child(s, 'retract', NS.retract);
  if (r) return r.getAttribute('id');
  const a = child(s, 'apply-to', NS.fasten);
  if (a && child(a, 'retract', NS.retract0)) return a.getAttribute('id');
  return null;
}

function onStanza(s) {
  if (s.localName === 'presence') return onPresence(s);
  if (s.localName !== 'message') return;
  const from = s.getAttribute('from') || '';
  const type = s.getAttribute('type') || 'normal';
  const b = bare(from);
  const me = bare(state.conn.jid);
  if (child(s, 'result', NS.mam)) return; // history pages, see loadHistory
  const ev = child(s, 'event', NS.pubsubEvent);
  if (ev) return pubsubEvent(b, ev);
  if (type === 'error') {
    const id = s.getAttribute('id');
    const cond = s.querySelector('error')?.firstElementChild?.localName || 'error';
    setDelivery(id, 'failed', cond);
    if (state.rooms.has(b) && !child(s, 'body')) roomUnavailable(b);
    return;
  }
  if (type === 'groupchat') return roomMessage(s, b, resourceOf(from));
  if (invitation(s, b)) return;
  // Copies of what this account sent or received elsewhere (XEP-0280),
  // only from the account itself.
  for (const dir of ['sent', 'received']) {
    const cw = child(s, dir, NS.carbons);
    if (!cw) continue;
    if (from !== me) return;
    const m = child(child(cw, 'forwarded', NS.forward), 'message');
    if (!m) return;
    const out = dir === 'sent';
    const peer = bare(out ? m.getAttribute('to') : m.getAttribute('from'));
    if (!peer || peer === me) return;
    applyChat(m, { peer, dir: out ? 'out' : 'in', fromFull: m.getAttribute('from'), live: true, carbon: true });
    render();
    return;
  }
  if (b.endsWith('@' + CONFERENCE)) return; // private room messages are not shown
  if (b === me) return;
  const delay = child(s, 'delay', NS.delay);
  applyChat(s, { peer: b, dir: 'in', fromFull: from, live: true, delayed: !!delay, time: delay ? new Date(delay.getAttribute('stamp')) : new Date() });
  render();
}

// applyChat takes one message of a conversation with peer, live, from a
// carbon copy or from history: receipts, reactions, retractions,
// corrections, call signals, nudges and messages.
function applyChat(s, o) {
  const c = chatOf(o.peer);
  const time = o.time || new Date();
  const received = child(s, 'received', NS.receipts);
  if (received && o.dir === 'in') setDelivery(received.getAttribute('id'), 'delivered', '', c);
  // Whatever they sent besides a chat state ends their typing.
  if (o.dir === 'in' && o.live && (child(s, 'body') || child(s, 'reactions', NS.reactions))) c.typing = '';
  const cs = [...s.children].find((e) => e.namespaceURI === NS.chatstates);
  if (cs && o.live && !o.delayed && o.dir === 'in') {
    c.typing = cs.localName === 'composing' ? 'typing' : cs.localName === 'paused' ? 'paused' : '';
    // A "composing" that is never followed up fades after 30 seconds.
    clearTimeout(c.typingTimer);
    if (c.typing === 'typing') c.typingTimer = setTimeout(() => { c.typing = ''; render(); }, 30000);
  }
  if (edits(c, s, o.dir === 'out' ? 'me' : o.peer, (m) => m.dir === o.dir)) return;
  const j = jmiOf(s);
  if (j) return callSignal(c, j, o, time);
  if (child(s, 'attention', NS.attention)) {
    if (o.live && !o.delayed && o.dir === 'in') nudged(o.peer);
    return;
  }
  const body = child(s, 'body')?.textContent;
  if (!body) return;
  // A correction of a message not shown here shows as a message.
  const replace = child(s, 'replace', NS.correct);
  const id = s.getAttribute('id') || o.sid || newId('m');
  if (c.messages.some((m) => m.dir === o.dir && m.id === id)) return;
  c.messages.push({
    id, dir: o.dir, body, file: fileOf(s), time, delayed: !!o.delayed, edited: !!replace,
    state: o.dir === 'out' ? 'sent' : undefined, reactions: new Map(), kind: 'text',
  });
  c.messages.sort((p, q) => p.time - q.time);
  c.typing = '';
  if (o.live && o.dir === 'in') {
    if (!(state.open?.jid === o.peer && !document.hidden)) c.unread++;
    if (document.hidden) {
      alerts.sound('message');
      alerts.notify(nameOf(o.peer), body, 'chat-' + o.peer, () => openPane('chat', o.peer));
    }
    if (!o.carbon && child(s, 'request', NS.receipts) && s.getAttribute('id')) {
      state.conn.send(x('message', { to: o.fromFull, id: newId('r') },
        x('received', { xmlns: NS.receipts, id: s.getAttribute('id') }), x('store', { xmlns: NS.hints })));
    }
  }
}

// edits applies what changes an earlier message of c — reactions (as who's),
// a removal or a correction (only when owns(message): from the message's
// own sender) — and says whether s was one of those.
function edits(c, s, who, owns) {
  const reactions = child(s, 'reactions', NS.reactions);
  if (reactions) {
    react(c, reactions.getAttribute('id'), who, [...reactions.children].filter((e) => e.localName === 'reaction').map((e) => e.textContent.trim()));
    return true;
  }
  const rid = retractId(s);
  if (rid) {
    const m = findMsg(c, rid);
    if (m && owns(m)) Object.assign(m, { retracted: true, body: '', file: null });
    return true;
  }
  const body = child(s, 'body')?.textContent;
  const replace = child(s, 'replace', NS.correct);
  const m = body && replace && findMsg(c, replace.getAttribute('id'));
  if (m && owns(m) && !m.retracted) {
    Object.assign(m, { body, file: fileOf(s), edited: true });
    return true;
  }
  return false;
}

// react sets who's reactions to the message id (XEP-0444: the full set each time).
function react(c, id, who, list) {
  const m = findMsg(c, id);
  if (!m || m.retracted) return;
  const clean = [...new Set(list.filter(validReaction))].slice(0, 6);
  if (clean.length) m.reactions.set(who, clean); else m.reactions.delete(who);
}

function setDelivery(id, st, why, only) {
  if (!id) return;
  const order = { sending: 0, sent: 1, delivered: 2, failed: 3 };
  for (const c of only ? [only] : [...state.chats.values(), ...state.rooms.values()]) {
    for (const m of c.messages || []) {
      if (m.id === id && m.dir === 'out' && order[st] > (order[m.state] ?? -1)) {
        m.state = st;
        if (why) m.why = why;
        render();
        return;
      }
    }
  }
}

let composing = false;
let pauseTimer;
function chatState(name) {
  if (state.open?.kind !== 'chat') return;
  state.conn.send(x('message', { to: state.open.jid, type: 'chat' }, x(name, { xmlns: NS.chatstates })));
}
$('compose').addEventListener('input', () => {
  if (!composing) { composing = true; chatState('composing'); }
  clearTimeout(pauseTimer);
  pauseTimer = setTimeout(() => { composing = false; chatState('paused'); }, 5000);
});
$('compose').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey) { ev.preventDefault(); $('composer').requestSubmit(); }
  if (ev.key === 'Escape' && state.editing) cancelEdit();
});

// sendTo sends a message of the open conversation or room and shows it.
function sendTo(kind, jid, payload, shown) {
  const id = newId('m');
  if (kind === 'room') {
    // The room echoes our message back; it is shown then.
    state.conn.send(x('message', { to: jid, type: 'groupchat', id }, payload, x('origin-id', { xmlns: NS.sid, id })), id);
    return id;
  }
  if (shown) {
    chatOf(jid).messages.push({ id, dir: 'out', time: new Date(), state: 'sending', reactions: new Map(), kind: 'text', ...shown });
  }
  state.conn.send(x('message', { to: jid, type: 'chat', id }, payload, x('origin-id', { xmlns: NS.sid, id }),
    shown ? x('request', { xmlns: NS.receipts }) : null, shown ? x('active', { xmlns: NS.chatstates }) : null), id);
  render();
  return id;
}

$('composer').onsubmit = (ev) => {
  ev.preventDefault();
  const body = $('compose').value.trim();
  if (!body || !state.open || state.open.kind === 'page') return;
  $('compose').value = '';
  clearTimeout(pauseTimer);
  composing = false;
  const { kind, jid } = state.open;
  if (state.editing && state.editing.jid === jid) {
    const c = kind === 'room' ? state.rooms.get(jid) : chatOf(jid);
    const m = findMsg(c, state.editing.id);
    state.editing = null;
    if (m && !m.retracted) {
      sendTo(kind, jid, [x('body', {}, body), x('replace', { xmlns: NS.correct, id: m.id })]);
      if (kind === 'chat') Object.assign(m, { body, edited: true });
      render();
      return;
    }
  }
  sendTo(kind, jid, x('body', {}, body), { body });
};

function startEdit(jid, m) {
  state.editing = { jid, id: m.id };
  $('compose').value = m.body;
  $('compose').focus();
  render();
}
function cancelEdit() {
  state.editing = null;
  $('compose').value = '';
  render();
}
$('edit-cancel').onclick = cancelEdit;

// retract removes one of our messages for everyone (XEP-0424), with the
// fallback text older clients show.
function retract(kind, jid, m) {
  sendTo(kind, jid, [x('retract', { xmlns: NS.retract, id: (kind === 'room' && m.sid) || m.id }),
    x('fallback', { xmlns: NS.fallback, for: NS.retract }),
    x('body', {}, t('retractFallback')), x('store', { xmlns: NS.hints })]);
  if (kind === 'chat') Object.assign(m, { retracted: true, body: '', file: null });
  render();
}

function toggleReaction(kind, jid, m, e) {
  const mine = new Set(m.reactions.get(kind === 'room' ? state.rooms.get(jid)?.nick : 'me') || []);
  if (mine.has(e)) mine.delete(e); else mine.add(e);
  const list = [...mine];
  sendTo(kind, jid, [x('reactions', { xmlns: NS.reactions, id: (kind === 'room' && m.sid) || m.id }, list.map((r) => x('reaction', {}, r))), x('store', { xmlns: NS.hints })]);
  if (kind === 'chat') react(chatOf(jid), m.id, 'me', list);
  state.picker = null;
  render();
}

// ---- nudges (XEP-0224) ----

$('nudge-btn').onclick = () => {
  const jid = state.open?.jid;
  if (!jid || state.open.kind !== 'chat') return;
  const last = state.nudges.get('to ' + jid) || 0;
  if (Date.now() - last < NUDGE_EVERY) { banner(t('nudgeWait')); return; }
  state.nudges.set('to ' + jid, Date.now());
  state.conn.send(x('message', { to: jid, type: 'headline', id: newId('n') }, x('attention', { xmlns: NS.attention })));
  note(jid, t('youNudged', nameOf(jid)), 'nudge');
  $('nudge-btn').disabled = true;
  setTimeout(() => { $('nudge-btn').disabled = false; }, NUDGE_EVERY);
};

// nudged shakes the window and plays a short sound, at most once per
// contact in NUDGE_EVERY (more are dropped), and only for contacts.
function nudged(peer) {
  if (!isContact(peer)) return;
  const last = state.nudges.get('from ' + peer) || 0;
  if (Date.now() - last < NUDGE_EVERY) return;
  state.nudges.set('from ' + peer, Date.now());
  note(peer, t('nudgedYou', nameOf(peer)), 'nudge');
  document.body.classList.remove('shake');
  void document.body.offsetWidth; // restart the animation
  document.body.classList.add('shake');
  document.body.dataset.shakes = String(Number(document.body.dataset.shakes || 0) + 1);
  setTimeout(() => document.body.classList.remove('shake'), 800);
  alerts.sound('nudge');
  alerts.notify(nameOf(peer), t('nudgedYou', nameOf(peer)), 'nudge-' + peer, () => openPane('chat', peer));
  const c = chatOf(peer);
  if (!(state.open?.jid === peer && !document.hidden)) c.unread++;
}

// note adds a line of the page's own to a conversation (not a message).
function note(jid, text, kind) {
  chatOf(jid).messages.push({ id: newId('note'), dir: 'note', body: text, time: new Date(), kind, reactions: new Map() });
  render();
}

// ---- files ----

$('attach-btn').onclick = () => $('file-input').click();
$('file-input').onchange = () => {
  for (const f of $('file-input').files) sendFile(f);
  $('file-input').value = '';
};
$('compose').addEventListener('paste', (ev) => {
  const files = [...(ev.clipboardData?.files || [])];
  if (!files.length) return;
  ev.preventDefault();
  for (const f of files) sendFile(f);
});
const chatView = $('chat-view');
chatView.addEventListener('dragover', (ev) => {
  if (![...(ev.dataTransfer?.types || [])].includes('Files') || !state.open || state.open.kind === 'page') return;
  ev.preventDefault();
  $('drop-hint').hidden = false;
});
chatView.addEventListener('dragleave', (ev) => { if (!chatView.contains(ev.relatedTarget)) $('drop-hint').hidden = true; });
chatView.addEventListener('drop', (ev) => {
  $('drop-hint').hidden = true;
  const files = [...(ev.dataTransfer?.files || [])];
  if (!files.length) return;
  ev.preventDefault();
  for (const f of files) sendFile(f);
});

// sendFile uploads a file and then sends its URL to the open conversation.
async function sendFile(file) {
  if (!state.open || state.open.kind === 'page') return;
  const { kind, jid } = state.open;
  const u = { id: newId('u'), jid, name: file.name || 'file', progress: 0, error: '', up: new Upload(state.conn, file) };
  state.uploads.push(u);
  u.up.onprogress = (f) => { u.progress = f; renderUploads(); };
  renderUploads();
  try {
    const url = await u.up.run();
    state.uploads = state.uploads.filter((o) => o !== u);
    sendTo(kind, jid, fileMessage(url), { body: url, file: describe(url) });
  } catch (e) {
    if (u.up.cancelled) state.uploads = state.uploads.filter((o) => o !== u);
    else u.error = e.message;
  }
  renderUploads();
}

// ---- history ----

async function loadHistory(jid) {
  const conn = state.conn;
  const c = chatOf(jid);
  if (c.loaded || c.loading) return;
  c.loading = true;
  const qid = newId('h');
  const page = [];
  const collect = (ev) => {
    const s = ev.detail;
    const r = s.localName === 'message' && child(s, 'result', NS.mam);
    if (!r || r.getAttribute('queryid') !== qid) return;
    const from = s.getAttribute('from');
    if (from && bare(from) !== bare(conn.jid)) return;
    const fwd = child(r, 'forwarded', NS.forward);
    const m = child(fwd, 'message');
    const d = child(fwd, 'delay', NS.delay);
    if (m && d) page.push({ m, stamp: d.getAttribute('stamp'), sid: r.getAttribute('id') });
  };
  conn.addEventListener('stanza', collect);
  try {
    await conn.iq('set', undefined, x('query', { xmlns: NS.mam, queryid: qid },
      x('x', { xmlns: NS.data, type: 'submit' },
        x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, NS.mam)),
        x('field', { var: 'with' }, x('value', {}, jid))),
      x('set', { xmlns: NS.rsm }, x('max', {}, '100'), x('before', {}))));
  } catch {
    // No archive on this server: only this page's messages are shown.
  } finally {
    conn.removeEventListener('stanza', collect);
    c.loading = false;
    c.loaded = true;
  }
  // In archive order, so receipts, reactions, edits and removals apply
  // to the messages before them.
  for (const { m, stamp, sid } of page) {
    const mine = bare(m.getAttribute('from')) === bare(conn.jid);
    applyChat(m, { peer: jid, dir: mine ? 'out' : 'in', fromFull: m.getAttribute('from'), time: new Date(stamp), sid, history: true });
  }
  c.messages.sort((p, q) => p.time - q.time);
  render();
}

function markRead(jid) {
  const c = state.chats.get(jid) || state.rooms.get(jid);
  if (c && c.unread) { c.unread = 0; render(); }
}

// ---- rooms and bookmarks (XEP-0402) ----

function newRoom(props = {}) {
  return { messages: [], unread: 0, joined: true, available: null, occupants: new Set(), jids: new Map(), name: '', password: '', ...props };
}

function roomAddress(name) {
  let n = name.trim().toLowerCase();
  if (!n.includes('@')) n = n.replace(/\s+/g, '-').replace(/[^\p{L}\p{N}._-]/gu, '') + '@' + CONFERENCE;
  return n;
}

$('join-room').onsubmit = (ev) => {
  ev.preventDefault();
  const name = roomAddress($('room-name').value);
  if (name.startsWith('@')) return;
  $('room-name').value = '';
  enterRoom(name, {});
};

// enterRoom joins (or opens) a room, keeps it as a bookmark once in, and
// shows it.
function enterRoom(room, props) {
  let r = state.rooms.get(room);
  if (!r) state.rooms.set(room, r = newRoom(props));
  else Object.assign(r, props, { joined: true });
  if (!r.self) joinRoomChat(room);
  openPane('room', room);
  entered(room, 15000).then((ok) => { if (ok && !r.hidden) bookmark(room); });
}

function joinRoomChat(room) {
  const r = state.rooms.get(room);
  r.nick = r.nick || localOf(state.conn.jid);
  r.available = null;
  r.needsPassword = false;
  state.conn.send(x('presence', { to: room + '/' + r.nick }, x('x', { xmlns: NS.muc }, x('history', { maxstanzas: 50 }),
    r.password ? x('password', {}, r.password) : null), people.photoUpdate()));
  clearTimeout(r.timer);
  r.timer = setTimeout(() => { if (r.available === null) roomUnavailable(room); }, 8000);
}

function roomUnavailable(room, why) {
  const r = state.rooms.get(room);
  if (!r || r.available === false) return;
  r.available = false;
  r.self = false;
  r.why = why || '';
  settle(r);
  render();
}

// settle tells whoever waits to be in room r whether we are.
function settle(r) {
  for (const done of [...(r.waiters || [])]) done(!!r.self);
}

// entered resolves to true once we are in the room (our own presence came
// back, and a room we created is configured), to false when the room
// refused us or nothing came within ms: a room's call is for those in it.
function entered(room, ms) {
  const r = state.rooms.get(room);
  if (!r) return Promise.resolve(false);
  if (r.self && !r.configuring) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok) => { if (!ok || !r.configuring) { clearTimeout(timer); r.waiters.delete(done); resolve(ok); } };
    const timer = setTimeout(() => done(false), ms);
    (r.waiters ||= new Set()).add(done);
  });
}

function roomPresence(p, room, type) {
  const r = state.rooms.get(room);
  if (!r) return;
  const nick = resourceOf(p.getAttribute('from'));
  if (type === 'error') {
    const cond = child(p, 'error')?.firstElementChild?.localName;
    // A room its creator has not set up yet refuses others for a moment.
    if (cond === 'item-not-found' && !r.retried) {
      r.retried = true;
      setTimeout(() => joinRoomChat(room), 3000);
      return;
    }
    if (cond === 'not-authorized') r.needsPassword = true;
    roomUnavailable(room, cond);
    return;
  }
  const mu = child(p, 'x', NS.mucUser);
  if (!mu) return;
  r.available = true;
  r.retried = false;
  const item = child(mu, 'item');
  if (type === 'unavailable') { r.occupants.delete(nick); r.jids.delete(nick); } else {
    r.occupants.add(nick);
    if (item?.getAttribute('jid')) r.jids.set(nick, item.getAttribute('jid'));
    const real = item?.getAttribute('jid');
    if (real) people.presenceHash(real, p); else people.presenceHash(room + '/' + nick, p, room + '/' + nick);
  }
  const codes = [...mu.children].filter((c) => c.localName === 'status').map((c) => c.getAttribute('code'));
  const self = codes.includes('110') || nick === r.nick;
  if (self && type !== 'unavailable' && codes.includes('201')) {
    // We created the room: submit its configuration (the defaults make an
    // instant room) so others may enter and call.
    r.configuring = true;
    const f = (name, v) => x('field', { var: name }, x('value', {}, v));
    state.conn.iq('set', room, x('query', { xmlns: NS.mucOwner }, x('x', { xmlns: NS.data, type: 'submit' },
      (r.config || []).length ? f('FORM_TYPE', 'http://jabber.org/protocol/muc#roomconfig') : null,
      (r.config || []).map(([k, v]) => f(k, v)))))
      .then(() => { r.configuring = false; r.created = true; settle(r); })
      .catch((e) => { r.configuring = false; banner(t('roomSetupFailed', e.message)); roomUnavailable(room, e.condition); });
  }
  if (self) {
    r.self = type !== 'unavailable';
    settle(r);
  }
  render();
}

function roomMessage(s, room, nick) {
  const r = state.rooms.get(room);
  if (!r) return;
  r.available = true;
  const subject = child(s, 'subject');
  if (subject && !child(s, 'body')) return;
  const delay = child(s, 'delay', NS.delay);
  const mine = nick === r.nick;
  const time = delay ? new Date(delay.getAttribute('stamp')) : new Date();
  if (edits(r, s, nick, (m) => m.from === nick)) { render(); return; }
  const body = child(s, 'body')?.textContent;
  if (!body) return;
  const replace = child(s, 'replace', NS.correct);
  const id = s.getAttribute('id') || newId('g');
  const sid = [...s.children].find((c) => c.localName === 'stanza-id' && c.namespaceURI === NS.sid && c.getAttribute('by') === room)?.getAttribute('id') || '';
  if (mine) setDelivery(id, 'delivered');
  if (r.messages.some((m) => m.id === id && m.from === nick)) return;
  r.messages.push({ id, sid, from: nick, jid: r.jids.get(nick) || '', dir: mine ? 'out' : 'in', body, file: fileOf(s), time,
    state: mine ? 'delivered' : undefined, reactions: new Map(), kind: 'text', edited: !!replace });
  r.messages.sort((p, q) => p.time - q.time);
  if (!mine && !delay) {
    if (!(state.open?.jid === room && !document.hidden)) r.unread++;
    if (document.hidden) {
      alerts.sound('message');
      alerts.notify(roomTitle(room) + ' — ' + nick, body, 'room-' + room, () => openPane('room', room));
    }
  }
  render();
}

const roomTitle = (room) => '#' + (state.rooms.get(room)?.name || localOf(room));

// Bookmarks: one PEP item per room on urn:xmpp:bookmarks:1, private to
// the account (whitelist), so every device lists the same rooms.
async function loadBookmarks() {
  try {
    const r = await state.conn.iq('get', undefined, x('pubsub', { xmlns: NS.pubsub }, x('items', { node: NS.bookmarks })));
    for (const it of child(child(r, 'pubsub', NS.pubsub), 'items')?.children || []) bookmarkItem(it);
  } catch { /* no bookmarks yet */ }
  render();
}

function bookmarkItem(it) {
  const room = it.getAttribute('id') || '';
  const c = child(it, 'conference', NS.bookmarks);
  if (!c || !room.endsWith('@' + CONFERENCE) || room.includes('/')) return;
  let r = state.rooms.get(room);
  const props = { name: c.getAttribute('name') || '', password: child(c, 'password')?.textContent || '', bookmarked: true };
  if (!r) {
    state.rooms.set(room, r = newRoom({ ...props, joined: ['true', '1'].includes(c.getAttribute('autojoin')) }));
    r.nick = child(c, 'nick')?.textContent || '';
    if (r.joined && state.conn) joinRoomChat(room);
  } else Object.assign(r, props);
}

function bookmark(room) {
  const r = state.rooms.get(room);
  if (!r || r.hidden) return;
  r.bookmarked = true;
  const f = (name, v) => x('field', { var: name }, x('value', {}, v));
  state.conn.iq('set', undefined, x('pubsub', { xmlns: NS.pubsub },
    x('publish', { node: NS.bookmarks }, x('item', { id: room },
      x('conference', { xmlns: NS.bookmarks, name: r.name || undefined, autojoin: 'true' },
        x('nick', {}, r.nick), r.password ? x('password', {}, r.password) : null))),
    x('publish-options', {}, x('x', { xmlns: NS.data, type: 'submit' },
      f('FORM_TYPE', 'http://jabber.org/protocol/pubsub#publish-options'), f('pubsub#persist_items', 'true'),
      f('pubsub#max_items', 'max'), f('pubsub#send_last_published_item', 'never'), f('pubsub#access_model', 'whitelist')))))
    .catch((e) => banner(t('bookmarkFailed', e.message)));
}

function pubsubEvent(from, ev) {
  const items = child(ev, 'items');
  if (!items) return;
  const node = items.getAttribute('node');
  if (node === NS.bookmarks) {
    if (from !== bare(state.conn.jid)) return;
    for (const it of items.children) {
      if (it.localName === 'item') bookmarkItem(it);
      else if (it.localName === 'retract') forgetRoom(it.getAttribute('id'));
    }
    render();
  } else if (node === NS.nick && from !== bare(state.conn.jid)) {
    people.nickEvent(from, items);
  }
}

function forgetRoom(room) {
  const r = state.rooms.get(room);
  if (!r) return;
  if (r.self) state.conn.send(x('presence', { to: room + '/' + r.nick, type: 'unavailable' }));
  if (state.call?.room === room && !state.one) state.call.leave();
  state.rooms.delete(room);
  if (state.open?.jid === room) closePane();
}

$('leave-room').onclick = () => {
  const room = state.open?.jid;
  if (!room || state.open.kind !== 'room') return;
  if (state.rooms.get(room)?.bookmarked) {
    state.conn.iq('set', undefined, x('pubsub', { xmlns: NS.pubsub }, x('retract', { node: NS.bookmarks, notify: 'true' }, x('item', { id: room })))).catch(() => {});
  }
  forgetRoom(room);
  render();
};

$('room-password-form').onsubmit = (ev) => {
  ev.preventDefault();
  const room = state.open?.jid;
  const r = state.rooms.get(room);
  if (!r) return;
  r.password = $('room-password').value;
  $('room-password').value = '';
  joinRoomChat(room);
  entered(room, 15000).then((ok) => { if (ok) bookmark(room); });
  render();
};

// A new room: its title, members only or not, a password or none.
$('new-room-btn').onclick = () => openPage('new-room');
$('new-room-form').onsubmit = async (ev) => {
  ev.preventDefault();
  const title = $('new-room-name').value.trim();
  const members = $('new-room-members').checked;
  const password = $('new-room-password').value;
  const room = roomAddress(title);
  $('new-room-error').textContent = '';
  if (!title || room.startsWith('@')) { $('new-room-error').textContent = t('roomNameNeeded'); return; }
  if (state.rooms.get(room)?.self) { $('new-room-error').textContent = t('roomExists'); return; }
  const config = [
    ['muc#roomconfig_roomname', title], ['muc#roomconfig_persistentroom', '1'],
    ['muc#roomconfig_membersonly', members ? '1' : '0'], ['muc#roomconfig_publicroom', members ? '0' : '1'],
    ['muc#roomconfig_passwordprotectedroom', password ? '1' : '0'],
  ];
  if (password) config.push(['muc#roomconfig_roomsecret', password]);
  state.rooms.set(room, newRoom({ name: title, password, config }));
  joinRoomChat(room);
  const ok = await entered(room, 15000);
  const r = state.rooms.get(room);
  if (!ok || !r) { $('new-room-error').textContent = t('roomCreateFailed'); state.rooms.delete(room); render(); return; }
  if (!r.created) banner(t('roomAlreadyThere'));
  $('new-room-form').reset();
  bookmark(room);
  openPane('room', room);
};

// ---- invitations (XEP-0045 mediated, XEP-0249 direct) ----

$('invite-btn').onclick = () => {
  const sel = $('invite-jid');
  const contacts = [...state.roster.values()];
  sel.replaceChildren(...contacts.map((c) => el('option', { value: c.jid }, nameOf(c.jid) + (nameOf(c.jid) !== c.jid ? ' (' + c.jid + ')' : ''))));
  $('invite-form').hidden = false;
  sel.focus();
};
$('invite-cancel').onclick = () => { $('invite-form').hidden = true; };
$('invite-form').onsubmit = (ev) => {
  ev.preventDefault();
  const room = state.open?.jid;
  const to = $('invite-jid').value;
  if (!room || !to) return;
  state.conn.send(x('message', { to: room, id: newId('i') }, x('x', { xmlns: NS.mucUser }, x('invite', { to }))));
  $('invite-form').hidden = true;
  banner(t('invited', nameOf(to), roomTitle(room)));
};

// invitation takes an invitation to a room of this server; it says
// whether the message was one.
function invitation(s, from) {
  const mu = child(s, 'x', NS.mucUser);
  const inv = child(mu, 'invite');
  let entry = null;
  if (inv && from.endsWith('@' + CONFERENCE)) {
    entry = { room: from, from: bare(inv.getAttribute('from') || ''), reason: child(inv, 'reason')?.textContent || '',
      password: child(mu, 'password')?.textContent || '', mediated: true };
  } else if (child(mu, 'decline') && from.endsWith('@' + CONFERENCE)) {
    const d = child(mu, 'decline');
    banner(t('declinedInvite', nameOf(d.getAttribute('from') || ''), roomTitle(from)));
    return true;
  } else {
    const direct = child(s, 'x', NS.xconference);
    const room = direct?.getAttribute('jid') || '';
    if (!direct) return false;
    if (!room.endsWith('@' + CONFERENCE) || room.includes('/')) return true;
    entry = { room, from, reason: direct.getAttribute('reason') || '', password: direct.getAttribute('password') || '', mediated: false };
  }
  if (child(s, 'delay', NS.delay) && state.rooms.get(entry.room)?.self) return true;
  if (state.rooms.get(entry.room)?.self) return true;
  state.invites.set(entry.room, entry);
  people.fetchProfile(entry.from);
  alerts.notify(nameOf(entry.from), t('invitesYou', nameOf(entry.from), '#' + localOf(entry.room)), 'invite-' + entry.room);
  render();
  return true;
}

function acceptInvite(inv) {
  state.invites.delete(inv.room);
  enterRoom(inv.room, { password: inv.password });
}

function declineInvite(inv) {
  state.invites.delete(inv.room);
  if (inv.mediated) state.conn.send(x('message', { to: inv.room }, x('x', { xmlns: NS.mucUser }, x('decline', { to: inv.from }))));
  render();
}

// ---- panes ----

function openPane(kind, jid) {
  state.open = { kind, jid };
  delete $('remove-contact').dataset.confirm;
  $('remove-contact').textContent = t('removeContact');
  $('invite-form').hidden = true;
  composing = false;
  state.picker = null;
  if (state.editing && state.editing.jid !== jid) state.editing = null;
  document.body.classList.add('pane-open');
  markRead(jid);
  render();
  if (kind === 'chat') {
    loadHistory(jid);
    people.fetchProfile(jid);
  }
  $('compose').focus();
}

const PAGES = ['profile', 'find', 'settings', 'new-room'];
function openPage(page) {
  state.open = { kind: 'page', page, jid: '' };
  document.body.classList.add('pane-open');
  render();
  if (page === 'profile') loadProfilePage();
  if (page === 'settings') loadSettingsPage();
  const first = $(page + '-view').querySelector('input, select, textarea');
  first?.focus();
}

function closePane() {
  state.open = null;
  document.body.classList.remove('pane-open');
  render();
}
$('back').onclick = closePane;
for (const b of document.querySelectorAll('.close-page')) b.onclick = closePane;
$('profile-btn').onclick = () => openPage('profile');
$('find-btn').onclick = () => openPage('find');
$('settings-btn').onclick = () => openPage('settings');

// ---- profile ----

let avatarImg = null;
async function loadProfilePage() {
  const me = bare(state.conn.jid);
  const p = await people.loadMine().catch(() => people.profile(me));
  $('profile-name').value = p.name || '';
  $('profile-error').textContent = '';
  avatarImg = null;
  for (const id of ['avatar-zoom', 'avatar-x', 'avatar-y']) { $(id).disabled = true; $(id).value = id === 'avatar-zoom' ? '1' : '0'; }
  const cv = $('avatar-preview');
  const g = cv.getContext('2d');
  g.clearRect(0, 0, cv.width, cv.height);
  if (p.avatar) {
    const i = new Image();
    i.onload = () => g.drawImage(i, 0, 0, cv.width, cv.height);
    i.src = p.avatar;
  }
  try {
    const l = await people.listing();
    $('dir-listed').checked = !!l;
    $('dir-listed').dataset.was = l ? '1' : '';
    // Empty: the display name is the directory's nickname.
    $('dir-nick').value = l && l.nick !== (p.name || localOf(me)) ? l.nick : '';
    $('dir-nick').placeholder = p.name || localOf(me);
    $('dir-country').value = l?.country || '';
    $('dir-languages').value = l?.languages || '';
    $('dir-interests').value = l?.interests || '';
  } catch {
    $('dir-listed').disabled = true;
  }
  renderDirFields();
}
function renderDirFields() { $('dir-fields').hidden = !$('dir-listed').checked; }
$('dir-listed').onchange = renderDirFields;

function drawAvatar() {
  if (!avatarImg) return;
  const c = people.squareAvatar(avatarImg, Number($('avatar-zoom').value), Number($('avatar-x').value), Number($('avatar-y').value));
  const g = $('avatar-preview').getContext('2d');
  g.clearRect(0, 0, 128, 128);
  g.drawImage(c, 0, 0);
}
$('avatar-file').onchange = () => {
  const f = $('avatar-file').files[0];
  if (!f) return;
  const i = new Image();
  i.onload = () => {
    avatarImg = i;
    for (const id of ['avatar-zoom', 'avatar-x', 'avatar-y']) $(id).disabled = false;
    drawAvatar();
  };
  i.onerror = () => { $('profile-error').textContent = t('notAPicture'); };
  i.src = URL.createObjectURL(f);
};
for (const id of ['avatar-zoom', 'avatar-x', 'avatar-y']) $(id).oninput = drawAvatar;

$('profile-form').onsubmit = async (ev) => {
  ev.preventDefault();
  const btn = ev.submitter || $('profile-form').querySelector('button[type=submit]');
  btn.disabled = true;
  $('profile-error').textContent = '';
  try {
    const name = $('profile-name').value.trim();
    const canvas = avatarImg ? people.squareAvatar(avatarImg, Number($('avatar-zoom').value), Number($('avatar-x').value), Number($('avatar-y').value)) : null;
    await people.saveProfile(name, canvas);
    if ($('dir-listed').checked) {
      await people.setListing({ nick: $('dir-nick').value.trim() || name || localOf(state.conn.jid), country: $('dir-country').value.trim(),
        languages: $('dir-languages').value, interests: $('dir-interests').value });
      $('dir-listed').dataset.was = '1';
    } else if ($('dir-listed').dataset.was) {
      await people.setListing(null);
      $('dir-listed').dataset.was = '';
    }
    avatarImg = null;
    sendPresence();
    banner(t('profileSaved'));
    render();
  } catch (e) {
    $('profile-error').textContent = t('profileFailed', e.message);
  } finally {
    btn.disabled = false;
  }
};

// ---- find people ----

$('find-form').onsubmit = async (ev) => {
  ev.preventDefault();
  const status = $('find-status');
  status.textContent = t('searching');
  $('find-results').replaceChildren();
  try {
    const rows = await people.search({ nick: $('find-nick').value.trim(), country: $('find-country').value.trim(),
      language: $('find-language').value.trim(), interest: $('find-interest').value.trim() });
    state.found = rows;
    status.textContent = rows.length ? t('found', rows.length) : t('foundNone');
    for (const r of rows.slice(0, 30)) people.fetchProfile(r.jid);
    renderFound();
  } catch (e) {
    status.textContent = t('searchFailed', e.message);
  }
};

function renderFound() {
  const me = bare(state.conn?.jid || '');
  $('find-results').replaceChildren(...(state.found || []).map((r) => {
    const known = isContact(r.jid) || r.jid === me;
    const details = [r.country, r.languages, r.interests].filter(Boolean).join(' · ');
    return el('li', { dataset: { jid: r.jid } },
      avatar(r.jid, r.nick),
      el('div', { class: 'who' }, el('span', { class: 'name' }, r.nick || r.jid), el('span', { class: 'jid' }, r.jid),
        details ? el('span', { class: 'status' }, details) : null),
      known ? el('span', { class: 'help' }, r.jid === me ? t('thatsYou') : t('inContacts'))
        : el('button', { type: 'button', 'aria-label': t('addAsContact', r.nick || r.jid), onclick: async () => { if (await addContact(r.jid)) render(); } }, t('addContactShort')));
  }));
}

// ---- settings ----

function loadSettingsPage() {
  $('set-notify').checked = alerts.settings.notify && ('Notification' in window) && Notification.permission === 'granted';
  $('set-sound').checked = alerts.settings.sound;
  $('set-badge').checked = alerts.settings.badge;
  $('settings-lang').value = lang();
}
$('set-notify').onchange = async () => {
  if ($('set-notify').checked) {
    const p = await alerts.askPermission();
    if (p !== 'granted') {
      $('set-notify').checked = false;
      $('notify-help').textContent = t(p === 'unsupported' ? 'notifyUnsupported' : 'notifyBlocked');
      alerts.setSetting('notify', false);
      return;
    }
  }
  alerts.setSetting('notify', $('set-notify').checked);
};
$('set-sound').onchange = () => alerts.setSetting('sound', $('set-sound').checked);
$('set-badge').onchange = () => { alerts.setSetting('badge', $('set-badge').checked); render(); };

// ---- room calls ----

$('call-btn').onclick = () => {
  if (state.call || state.one || state.open?.kind !== 'room') return;
  startCall(state.open.jid, 0, {});
};

// A call the server ended because its media could not be set up is
// joined again by itself, a few times.
const REJOIN = new Set(['negotiation-failed', 'connect-timeout', 'connection-failed']);

// The server lets into a room's call only those in the room: the call
// waits (a few seconds at most) for the room to let us in.
async function startCall(room, attempt, { video = true } = {}) {
  const call = new Call(state.conn, room, { video });
  state.call = call;
  call.addEventListener('change', () => { oneProgress(); renderCall(); });
  call.addEventListener('notice', (ev) => callNotice(ev.detail));
  call.addEventListener('ended', (ev) => {
    if (state.call === call) state.call = null;
    $('grid').replaceChildren();
    if (REJOIN.has(ev.detail.reason) && attempt < 3 && state.conn.state === 'online') {
      banner(t('callRejoining'));
      startCall(room, attempt + 1, { video });
      return;
    }
    if (state.one && state.one.room === room) endOne('failed');
    else if (!call.quiet) banner(ev.detail.text);
    render();
  });
  callNotice('');
  render();
  try {
    if (!(await entered(room, 12000))) throw new Error(t('notInRoom'));
    await call.start();
  } catch (e) {
    call.stop(t('callJoinFailed', e.message || e.condition));
  }
}
$('leave-btn').onclick = () => {
  if (state.one) endOne(state.one.phase === 'calling' ? 'cancel' : 'hangup');
  else state.call?.leave();
};
$('mute-btn').onclick = () => state.call?.setMuted(!state.call.muted);
$('camera-btn').onclick = () => state.call?.setCameraOff(!state.call.cameraOff);
$('screen-btn').onclick = () => state.call?.toggleScreen();

function callNotice(text) {
  $('call-notice').textContent = text;
  $('call-notice').hidden = !text;
}

// ---- one-to-one calls (XEP-0353 with a private room of the conference) ----

function jmiOf(s) {
  for (const c of s.children) {
    if (c.namespaceURI !== NS.jmi) continue;
    const d = c.localName === 'propose' ? [...c.children].find((e) => e.localName === 'description' && e.namespaceURI === NS.conf) : null;
    return { name: c.localName, sid: c.getAttribute('id') || '', video: d?.getAttribute('media') === 'video', room: d?.getAttribute('room') || '', hasOurs: !!d };
  }
  return null;
}

function jmi(to, name, sid, ...payload) {
  state.conn.send(x('message', { to, type: 'chat', id: newId('j') }, x(name, { xmlns: NS.jmi, id: sid }, ...payload), x('store', { xmlns: NS.hints })));
}

// callSignal notes a call's progress in the conversation and acts on it.
function callSignal(c, j, o, time) {
  let e = c.calls.get(j.sid);
  if (j.name === 'propose') {
    if (!j.hasOurs) return; // a call of another kind of client: not for this one
    if (!e) {
      e = { id: 'call-' + j.sid, kind: 'call', dir: o.dir, sid: j.sid, video: j.video, outcome: 'ringing', time, reactions: new Map() };
      c.calls.set(j.sid, e);
      c.messages.push(e);
      c.messages.sort((p, q) => p.time - q.time);
    }
    if (o.live && !o.delayed && o.dir === 'in' && !o.carbon) incoming(o.peer, o.fromFull, j, e);
    return;
  }
  if (!e) return;
  const one = state.one;
  const mine = one && one.sid === j.sid;
  switch (j.name) {
    case 'proceed': case 'accept':
      e.outcome = 'answered';
      if (o.live && mine && one.dir === 'out' && o.dir === 'in' && one.phase === 'calling') accepted(o.fromFull);
      else if (o.live && mine && one.dir === 'in' && o.dir === 'out' && one.phase === 'ringing') endOne('elsewhere');
      break;
    case 'reject':
      e.outcome = 'declined';
      if (o.live && mine && one.dir === 'out' && o.dir === 'in') endOne('declined');
      else if (o.live && mine && one.dir === 'in' && o.dir === 'out' && one.phase === 'ringing') endOne('elsewhere');
      break;
    case 'retract':
      if (e.outcome === 'ringing') e.outcome = 'missed';
      if (o.live && mine && one.dir === 'in' && o.dir === 'in') endOne('missed');
      break;
    case 'finish':
      if (o.live && mine && o.dir === 'in') endOne('finished');
      break;
  }
}

// privateRoom makes the room of a one-to-one call: hidden, temporary,
// members only with the callee its only member, two people at most, and
// real addresses shown; nobody else can enter it, so nobody else can
// join its call.
async function privateRoom(peer) {
  const rnd = crypto.getRandomValues(new Uint8Array(12));
  const room = 'call-' + [...rnd].map((b) => b.toString(16).padStart(2, '0')).join('') + '@' + CONFERENCE;
  state.rooms.set(room, newRoom({ hidden: true, config: [
    ['muc#roomconfig_roomname', 'Call'], ['muc#roomconfig_persistentroom', '0'], ['muc#roomconfig_publicroom', '0'],
    ['muc#roomconfig_membersonly', '1'], ['muc#roomconfig_maxusers', '2'], ['muc#roomconfig_whois', 'anyone'],
  ] }));
  joinRoomChat(room);
  if (!(await entered(room, 10000)) || !state.rooms.get(room)?.created) throw new Error(t('callRoomFailed'));
  await state.conn.iq('set', room, x('query', { xmlns: NS.mucAdmin }, x('item', { affiliation: 'member', jid: peer })));
  return room;
}

function leaveHiddenRoom(room) {
  const r = state.rooms.get(room);
  if (!r || !r.hidden) return;
  if (r.self || r.available === null) state.conn.send(x('presence', { to: room + '/' + r.nick, type: 'unavailable' }));
  state.rooms.delete(room);
}

async function callContact(peer, video) {
  if (state.call || state.one) { banner(t('alreadyInCall')); return; }
  const sid = newId('call');
  const one = state.one = { sid, peer, dir: 'out', video, phase: 'calling' };
  render();
  try {
    const room = await privateRoom(peer);
    if (state.one !== one) { leaveHiddenRoom(room); return; }
    one.room = room;
    jmi(peer, 'propose', sid, x('description', { xmlns: NS.conf, media: video ? 'video' : 'audio', room }));
    callSignal(chatOf(peer), { name: 'propose', sid, video, room, hasOurs: true }, { dir: 'out', peer }, new Date());
    one.timer = setTimeout(() => endOne('noanswer'), RING_FOR);
    render();
  } catch (e) {
    if (state.one === one) endOne('failed', e.message);
  }
}
$('voice-btn').onclick = () => state.open?.kind === 'chat' && callContact(state.open.jid, false);
$('video-btn').onclick = () => state.open?.kind === 'chat' && callContact(state.open.jid, true);

// incoming rings for a call from a contact (others' calls show as missed).
function incoming(peer, fromFull, j, e) {
  const room = j.room;
  const valid = room.startsWith('call-') && room.endsWith('@' + CONFERENCE) && !room.includes('/') && resourceOf(fromFull);
  if (!valid || !isContact(peer)) { e.outcome = 'missed'; return; }
  if (state.one || state.call) {
    jmi(fromFull, 'reject', j.sid, x('reason', { xmlns: NS.jingle }, x('busy')));
    e.outcome = 'missed';
    return;
  }
  state.one = { sid: j.sid, peer, peerFull: fromFull, dir: 'in', video: j.video, room, phase: 'ringing' };
  state.one.timer = setTimeout(() => endOne('missed'), RING_FOR + 5000);
  const name = nameOf(peer);
  $('ring-title').textContent = t(j.video ? 'ringVideo' : 'ringVoice', name);
  $('ring-accept').textContent = t('accept');
  $('ring-accept').setAttribute('aria-label', t('acceptCallFrom', name));
  $('ring-decline').textContent = t('decline');
  $('ring-decline').setAttribute('aria-label', t('declineCallFrom', name));
  const av = people.avatarOf(peer);
  $('ring-avatar').hidden = !av;
  if (av) $('ring-avatar').src = av;
  $('ring').show();
  $('ring-accept').focus();
  const ring = () => alerts.sound('ring');
  ring();
  state.one.ringTimer = setInterval(ring, 3000);
  alerts.notify(name, t(j.video ? 'ringVideo' : 'ringVoice', name), 'call-' + j.sid, () => openPane('chat', peer));
  render();
}

function stopRinging() {
  const one = state.one;
  if (one) { clearInterval(one.ringTimer); clearTimeout(one.timer); }
  if ($('ring').open) $('ring').close();
}

$('ring-accept').onclick = async () => {
  const one = state.one;
  if (!one || one.dir !== 'in' || one.phase !== 'ringing') return;
  stopRinging();
  one.phase = 'connecting';
  jmi(one.peerFull, 'proceed', one.sid);
  const e = chatOf(one.peer).calls.get(one.sid);
  if (e) e.outcome = 'answered';
  openPane('chat', one.peer);
  state.rooms.set(one.room, newRoom({ hidden: true }));
  joinRoomChat(one.room);
  if (!(await entered(one.room, 12000))) { if (state.one === one) endOne('failed'); return; }
  // Only the caller may be in the room with us: anything else is not the
  // private call we were asked to.
  const r = state.rooms.get(one.room);
  const others = [...r.occupants].filter((n) => n !== r.nick);
  if (others.some((n) => bare(r.jids.get(n) || '') !== one.peer)) { endOne('notprivate'); return; }
  if (state.one === one) startCall(one.room, 0, { video: one.video });
};
$('ring-decline').onclick = () => { if (state.one?.dir === 'in') endOne('decline'); };
$('ring').addEventListener('cancel', (ev) => { ev.preventDefault(); });

function accepted(fromFull) {
  const one = state.one;
  clearTimeout(one.timer);
  one.peerFull = fromFull;
  one.phase = 'connecting';
  startCall(one.room, 0, { video: one.video });
  render();
}

// oneProgress follows the call's participants: the other person there
// makes the call active; the other person gone (after being there) ends it.
function oneProgress() {
  const one = state.one;
  const call = state.call;
  if (!one || !call || call.room !== one.room) return;
  const n = call.participants.size;
  if (n > 0 && one.phase === 'connecting') { one.phase = 'active'; one.seen = true; }
  if (n === 0 && one.seen) endOne('left');
}

// endOne ends the one-to-one call, telling the other side as XEP-0353
// says for the way it ended, and leaves its room.
function endOne(how, detail) {
  const one = state.one;
  if (!one) return;
  state.one = null;
  stopRinging();
  clearTimeout(one.timer);
  const c = chatOf(one.peer);
  const e = c.calls.get(one.sid);
  const name = nameOf(one.peer);
  const messages = {
    cancel: t('callCancelled'), noanswer: t('callNoAnswer', name), declined: t('callDeclinedBy', name),
    decline: t('callYouDeclined'), missed: t('callMissed', name), hangup: t('callEnded'), finished: t('callEndedBy', name),
    left: t('callEndedBy', name), failed: t('callFailed') + (detail ? ' ' + detail : ''), notprivate: t('callNotPrivate'),
    elsewhere: t('callElsewhere'),
  };
  switch (how) {
    case 'cancel': case 'noanswer':
      if (one.room) jmi(one.peer, 'retract', one.sid);
      if (e) e.outcome = 'missed';
      break;
    case 'decline':
      jmi(one.peerFull, 'reject', one.sid);
      if (e) e.outcome = 'declined';
      break;
    case 'missed':
      if (e && e.outcome === 'ringing') e.outcome = 'missed';
      break;
    case 'hangup': case 'left': case 'failed': case 'notprivate':
      if (one.peerFull) jmi(one.peerFull, 'finish', one.sid, x('reason', { xmlns: NS.jingle }, x(how === 'hangup' || how === 'left' ? 'success' : 'failed-application')));
      else if (one.dir === 'out' && one.room) jmi(one.peer, 'retract', one.sid);
      break;
  }
  if (state.call && state.call.room === one.room) {
    const call = state.call;
    state.call = null;
    call.quiet = true; // this call's end is told below
    call.leave();
  }
  if (one.room) leaveHiddenRoom(one.room);
  banner(messages[how] || '');
  render();
}

// ---- call tiles ----

function tile(key, label, stream, muted, av) {
  let tl = $('grid').querySelector(`.tile[data-key="${CSS.escape(key)}"]`);
  if (!tl) {
    const v = el('video', { autoplay: true, playsinline: true });
    v.muted = muted;
    tl = el('figure', { class: 'tile', dataset: { key } }, el('img', { class: 'tile-avatar', alt: '', hidden: true }), v, el('figcaption'));
    $('grid').append(tl);
  }
  const v = tl.querySelector('video');
  if (v.srcObject !== stream) v.srcObject = stream;
  v.play?.().catch(() => {});
  tl.querySelector('figcaption').textContent = label;
  const hasVideo = !!stream?.getVideoTracks().some((tr) => tr.readyState === 'live');
  const img = tl.querySelector('.tile-avatar');
  img.hidden = hasVideo || !av;
  if (av && img.src !== av) img.src = av;
  return tl;
}

function renderCall() {
  const call = state.call;
  const one = state.one;
  const view = $('call-view');
  const where = one ? one.peer : call?.room;
  const show = (!!call || (one && one.phase !== 'ringing')) && state.open?.jid === where;
  view.hidden = !show;
  $('call-status').textContent = !one ? '' : one.phase === 'calling' ? t('calling', nameOf(one.peer))
    : one.phase === 'connecting' ? t('connectingCall') : t('inCallWith', nameOf(one.peer));
  $('leave-btn').textContent = one ? (one.phase === 'calling' ? t('cancelCall') : t('hangUp')) : t('leaveCall');
  if (!call) {
    $('grid').replaceChildren();
    for (const id of ['mute-btn', 'camera-btn', 'screen-btn']) $(id).disabled = true;
    return;
  }
  const keep = new Set(['self']);
  if (call.local) {
    const tl = tile('self', t('you') + (call.muted ? ' ' + t('mutedMark') : '') + (call.local.getVideoTracks().length || !call.video ? '' : ' ' + t('noCameraMark')), call.local, true, people.avatarOf(state.conn.jid));
    tl.dataset.participant = call.self || '';
    tl.classList.toggle('speaking', !!call.self && call.speaker === call.self);
  }
  for (const p of call.participants.values()) {
    keep.add(p.id);
    // As the room shows them: the nickname, or the name they gave
    // themselves when the room shows who they are.
    const nick = resourceOf(p.occupant);
    const named = p.jid && people.profile(p.jid).name;
    const label = one ? nameOf(one.peer) : named || nick || localOf(p.jid) || t('someone');
    const tl = tile(p.id, label, p.stream, false, p.jid ? people.avatarOf(p.jid) : people.profile(p.occupant).avatar);
    tl.dataset.participant = p.id;
    tl.dataset.nick = nick;
    tl.dataset.jid = p.jid;
    tl.classList.toggle('speaking', call.speaker === p.id);
  }
  for (const tl of [...$('grid').children]) if (!keep.has(tl.dataset.key)) tl.remove();
  $('grid').dataset.count = String($('grid').children.length);
  const hasAudio = !!call.local?.getAudioTracks().length;
  const hasVideo = !!call.local?.getVideoTracks().length;
  $('mute-btn').disabled = !hasAudio;
  $('camera-btn').disabled = !hasVideo;
  $('screen-btn').disabled = !hasVideo;
  $('mute-btn').textContent = call.muted ? t('unmute') : t('mute');
  $('mute-btn').setAttribute('aria-pressed', String(call.muted));
  $('camera-btn').textContent = call.cameraOff ? t('cameraOn') : t('cameraOff');
  $('camera-btn').setAttribute('aria-pressed', String(call.cameraOff));
  $('screen-btn').textContent = call.sharing ? t('stopSharing') : t('shareScreen');
  $('screen-btn').setAttribute('aria-pressed', String(!!call.sharing));
}

// ---- rendering ----

function avatar(jid, label, via) {
  const src = via ? people.profile(via).avatar : people.avatarOf(jid);
  if (src) return el('img', { class: 'avatar', src, alt: '' });
  const letter = ((label || localOf(jid) || '?').trim()[0] || '?').toUpperCase();
  // The letter is drawn by the stylesheet, so it is not part of the text.
  return el('span', { class: 'avatar letter', 'data-letter': letter, 'aria-hidden': 'true' });
}

function renderUploads() {
  const jid = state.open?.jid;
  $('uploads').replaceChildren(...state.uploads.filter((u) => u.jid === jid).map((u) => el('li', { class: u.error ? 'failed' : '' },
    el('span', { class: 'name' }, u.name),
    u.error ? el('span', { class: 'error', role: 'alert' }, u.error)
      : el('progress', { max: '1', value: String(u.progress), 'aria-label': t('uploading', u.name) }),
    u.error ? el('button', { type: 'button', class: 'secondary', onclick: () => { state.uploads = state.uploads.filter((o) => o !== u); renderUploads(); } }, t('dismiss'))
      : el('button', { type: 'button', class: 'secondary', 'aria-label': t('cancelUpload', u.name), onclick: () => u.up.cancel() }, t('cancel')))));
}

const dayFmt = () => new Intl.DateTimeFormat(lang(), { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
const timeFmt = () => new Intl.DateTimeFormat(lang(), { hour: '2-digit', minute: '2-digit' });

function render() {
  if (!state.conn) return;
  const me = bare(state.conn.jid);
  const myName = people.profile(me).name;
  $('me').replaceChildren(el('span', { class: 'name' }, myName || me), myName ? el('span', { class: 'jid' }, me) : '');
  $('me').dataset.jid = me;
  const myAv = people.avatarOf(me);
  $('me-avatar').hidden = !myAv;
  if (myAv) $('me-avatar').src = myAv;

  const reqs = [...state.requests];
  $('requests-box').hidden = reqs.length === 0;
  $('requests').replaceChildren(...reqs.map((jid) => el('li', { dataset: { jid } },
    avatar(jid),
    el('span', { class: 'name' }, t('wantsToAdd', nameOf(jid))),
    el('button', { type: 'button', class: 'accept', 'aria-label': t('acceptFrom', nameOf(jid)), onclick: () => acceptRequest(jid) }, t('accept')),
    el('button', { type: 'button', class: 'refuse secondary', 'aria-label': t('refuseFrom', nameOf(jid)), onclick: () => refuseRequest(jid) }, t('refuse')))));

  const invs = [...state.invites.values()];
  $('invites-box').hidden = invs.length === 0;
  $('invites').replaceChildren(...invs.map((inv) => el('li', { dataset: { room: inv.room } },
    el('span', { class: 'name' }, t('invitesYou', nameOf(inv.from), '#' + localOf(inv.room)) + (inv.reason ? ' — ' + inv.reason : '')),
    el('button', { type: 'button', class: 'accept', 'aria-label': t('joinRoomNamed', '#' + localOf(inv.room)), onclick: () => acceptInvite(inv) }, t('join')),
    el('button', { type: 'button', class: 'refuse secondary', 'aria-label': t('declineInviteTo', '#' + localOf(inv.room)), onclick: () => declineInvite(inv) }, t('decline')))));

  const contacts = [...state.roster.values()].sort((a, b) => nameOf(a.jid).localeCompare(nameOf(b.jid)));
  $('no-contacts').hidden = contacts.length > 0;
  $('contacts').replaceChildren(...contacts.map((it) => {
    const p = presenceOf(it.jid);
    const unread = state.chats.get(it.jid)?.unread || 0;
    const pending = it.subscription === 'none' || it.subscription === 'from' ? (it.ask ? t('requestSent') : t('notSharing')) : '';
    const name = nameOf(it.jid);
    return el('li', { dataset: { jid: it.jid, presence: p.show }, class: state.open?.jid === it.jid ? 'current' : '' },
      el('button', { type: 'button', class: 'open', onclick: () => openPane('chat', it.jid),
        'aria-label': [name, showText(p.show), p.status, unread ? t('unread', unread) : ''].filter(Boolean).join(', ') },
      avatar(it.jid, name),
      el('span', { class: 'dot ' + p.show, 'aria-hidden': 'true' }),
      el('span', { class: 'name' }, name),
      name !== it.jid ? el('span', { class: 'jid' }, it.jid) : null,
      el('span', { class: 'status' }, pending || p.status || showText(p.show)),
      unread ? el('span', { class: 'unread', 'aria-hidden': 'true' }, String(unread)) : null));
  }));

  $('rooms').replaceChildren(...[...state.rooms.entries()].filter(([, r]) => !r.hidden).map(([jid, r]) => el('li', { dataset: { jid }, class: state.open?.jid === jid ? 'current' : '' },
    el('button', { type: 'button', class: 'open', onclick: () => { if (!r.self && !r.joined) { r.joined = true; joinRoomChat(jid); } openPane('room', jid); } },
      el('span', { class: 'name' }, roomTitle(jid)),
      r.name ? el('span', { class: 'jid' }, jid) : null,
      state.call?.room === jid ? el('span', { class: 'status' }, t('inCall')) : null,
      r.unread ? el('span', { class: 'unread' }, String(r.unread)) : null))));

  const total = [...state.chats.values(), ...state.rooms.values()].reduce((n, c) => n + (c.unread || 0), 0);
  document.title = (total ? `(${total}) ` : '') + t('title', DOMAIN);
  alerts.badge(total);

  const open = state.open;
  $('empty').hidden = !!open;
  $('chat-view').hidden = !open || open.kind === 'page';
  for (const pg of PAGES) $(pg + '-view').hidden = !(open?.kind === 'page' && open.page === pg);
  if (open?.kind === 'page' && open.page === 'find') renderFound();
  if (open && open.kind !== 'page') {
    const isRoom = open.kind === 'room';
    const r = isRoom ? state.rooms.get(open.jid) : null;
    if (isRoom && !r) { closePane(); return; }
    const c = isRoom ? r : chatOf(open.jid);
    const name = isRoom ? roomTitle(open.jid) : nameOf(open.jid);
    $('chat-title').textContent = name;
    $('chat-jid').textContent = name !== open.jid ? open.jid : '';
    const av = isRoom ? '' : people.avatarOf(open.jid);
    $('chat-avatar').hidden = !av;
    if (av) $('chat-avatar').src = av;
    const p = isRoom ? null : presenceOf(open.jid);
    $('chat-presence').textContent = isRoom ? (r.available ? t('inTheRoom', r.occupants.size) : '') : `${showText(p.show)}${p.status ? ' — ' + p.status : ''}`;
    const busy = !!state.call || !!state.one;
    $('call-btn').hidden = !isRoom || busy || r.available === false;
    $('voice-btn').hidden = isRoom || busy;
    $('video-btn').hidden = isRoom || busy;
    $('nudge-btn').hidden = isRoom;
    $('invite-btn').hidden = !isRoom || !r.self;
    $('leave-room').hidden = !isRoom;
    $('remove-contact').hidden = isRoom || !state.roster.has(open.jid);
    $('room-note').hidden = !(isRoom && r.available === false);
    $('room-note-text').textContent = r?.needsPassword ? t('roomNeedsPassword') : r?.why === 'registration-required' ? t('roomMembersOnly') : t('roomUnavailable');
    $('room-password-form').hidden = !r?.needsPassword;
    $('composer').hidden = isRoom && r.available === false;
    $('editing').hidden = !(state.editing && state.editing.jid === open.jid);
    $('typing').textContent = !isRoom && c.typing === 'typing' ? t('isTyping', nameOf(open.jid)) : '';
    renderMessages(c.messages, isRoom, open);
    if (!document.hidden) c.unread = 0;
  }
  renderUploads();
  renderCall();
}

function callText(m, peer) {
  const name = nameOf(peer);
  const kind = m.video ? t('videoCallWord') : t('voiceCallWord');
  const ringingTooLong = m.outcome === 'ringing' && Date.now() - m.time > RING_FOR + 10000;
  const outcome = ringingTooLong ? 'missed' : m.outcome;
  if (m.dir === 'out') {
    return { answered: t('logOutAnswered', kind, name), declined: t('logOutDeclined', kind, name), missed: t('logOutMissed', kind, name), ringing: t('logOutRinging', kind, name) }[outcome];
  }
  return { answered: t('logInAnswered', kind, name), declined: t('logInDeclined', kind, name), missed: t('logInMissed', kind, name), ringing: t('logInRinging', kind, name) }[outcome];
}

function renderMessages(list, isRoom, open) {
  const ol = $('messages');
  const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
  const focused = document.activeElement && ol.contains(document.activeElement) ? document.activeElement.getAttribute('aria-label') : null;
  const items = [];
  let day = '';
  const df = dayFmt();
  const tf = timeFmt();
  const lastOut = [...list].reverse().find((m) => m.dir === 'out' && m.kind === 'text' && !m.retracted && !m.file);
  const myKey = isRoom ? state.rooms.get(open.jid)?.nick : 'me';
  for (const m of list) {
    const d = df.format(m.time);
    if (d !== day) { day = d; items.push(el('li', { class: 'day' }, d)); }
    const time = el('time', { datetime: m.time.toISOString(), title: m.time.toLocaleString(lang()) }, tf.format(m.time));
    if (m.kind === 'call') {
      const text = callText(m, open.jid);
      items.push(el('li', { class: 'event call-log ' + (m.dir === 'in' && /missed/.test(m.outcome) ? 'missed' : ''), dataset: { sid: m.sid, outcome: m.outcome } },
        el('span', { class: 'body' }, (m.video ? '🎥 ' : '📞 ') + text), ' ', time));
      continue;
    }
    if (m.dir === 'note') {
      items.push(el('li', { class: 'event ' + m.kind }, el('span', { class: 'body' }, m.body), ' ', time));
      continue;
    }
    const who = isRoom && m.dir === 'in' ? el('span', { class: 'who' }, avatar(m.jid || open.jid + '/' + m.from, m.from, m.jid ? null : open.jid + '/' + m.from),
      m.jid && people.profile(m.jid).name ? people.profile(m.jid).name : m.from) : null;
    const content = m.retracted ? el('span', { class: 'body removed' }, t('messageRemoved'))
      : m.file ? fileView(m.file) : el('span', { class: 'body' }, emoticons(m.body));
    const reactions = [...m.reactions.entries()];
    const counts = new Map();
    for (const [who2, list2] of reactions) for (const e of list2) counts.set(e, [...(counts.get(e) || []), who2]);
    const tools = m.retracted ? null : el('span', { class: 'tools' },
      el('button', { type: 'button', class: 'tool', 'aria-label': t('reactTo'), title: t('reactTo'), 'aria-expanded': String(!!(state.picker && state.picker.id === m.id)),
        onclick: () => { state.picker = state.picker?.id === m.id ? null : { id: m.id }; render(); focusPicker(); } }, '☺'),
      m === lastOut ? el('button', { type: 'button', class: 'tool', 'aria-label': t('editMessage'), title: t('editMessage'), onclick: () => startEdit(open.jid, m) }, '✎') : null,
      m.dir === 'out' ? el('button', { type: 'button', class: 'tool', 'aria-label': state.confirmRemove === m.id ? t('reallyRemoveMessage') : t('removeMessage'),
        title: t('removeMessage'), onclick: () => {
          if (state.confirmRemove !== m.id) { state.confirmRemove = m.id; render(); return; }
          state.confirmRemove = null;
          retract(open.kind, open.jid, m);
        } }, state.confirmRemove === m.id ? t('reallyRemoveMessage') : '🗑') : null);
    items.push(el('li', { class: 'msg ' + m.dir + (m.retracted ? ' retracted' : ''), dataset: { id: m.id, state: m.state || '' } },
      who, content,
      counts.size ? el('span', { class: 'reactions' }, [...counts.entries()].map(([e, whos]) => el('button', {
        type: 'button', class: 'reaction', 'aria-pressed': String(whos.includes(myKey)),
        'aria-label': t('reactionLabel', emojiName(e), whos.length), onclick: () => toggleReaction(open.kind, open.jid, m, e),
      }, e + ' ' + whos.length))) : null,
      state.picker && state.picker.id === m.id ? picker(REACTIONS, t('chooseReaction'), (e) => toggleReaction(open.kind, open.jid, m, e), () => { state.picker = null; render(); }) : null,
      el('span', { class: 'meta' }, time,
        m.edited && !m.retracted ? ' · ' + t('edited') : '',
        m.delayed ? ' · ' + t('sentWhileAway') : '',
        m.dir === 'out' && m.state ? ' · ' + t('delivery_' + m.state) + (m.why ? ` (${m.why})` : '') : ''),
      tools));
  }
  ol.replaceChildren(...items);
  if (focused) [...ol.querySelectorAll('button')].find((b) => b.getAttribute('aria-label') === focused)?.focus();
  if (atBottom) ol.scrollTop = ol.scrollHeight;
}

function focusPicker() { $('messages').querySelector('.picker button')?.focus(); }

function fileView(f) {
  const inline = shownInline(f.url);
  if (f.image && inline) {
    return el('button', { type: 'button', class: 'thumb', 'aria-label': t('openPicture', f.name), onclick: () => viewImage(f) },
      el('img', { src: f.url, alt: f.name, loading: 'lazy', referrerpolicy: 'no-referrer' }));
  }
  const sz = sizeOf(f.url, render);
  return el('span', { class: 'file-card' },
    el('span', { class: 'file-icon', 'aria-hidden': 'true' }, '📄'),
    el('span', { class: 'file-name' }, f.name),
    sz ? el('span', { class: 'file-size' }, sz) : null,
    el('a', { href: f.url, target: '_blank', rel: 'noopener noreferrer', download: f.name, 'aria-label': t('downloadFile', f.name) }, t('download')));
}

function viewImage(f) {
  $('viewer-img').src = f.url;
  $('viewer-img').alt = f.name;
  $('viewer-title').textContent = f.name;
  $('viewer-open').href = f.url;
  $('viewer').showModal();
}
$('viewer-close').onclick = () => $('viewer').close();

// The composer's emoji picker.
$('emoji-btn').onclick = () => {
  const open = document.querySelector('.composer-picker');
  if (open) { open.remove(); $('emoji-btn').setAttribute('aria-expanded', 'false'); return; }
  const close = () => { box.remove(); $('emoji-btn').setAttribute('aria-expanded', 'false'); $('compose').focus(); };
  const box = picker(EMOJI.map(([e]) => e), t('insertEmoji'), (e) => {
    const ta = $('compose');
    const at = ta.selectionStart ?? ta.value.length;
    ta.value = ta.value.slice(0, at) + e + ta.value.slice(ta.selectionEnd ?? at);
    ta.selectionStart = ta.selectionEnd = at + e.length;
    close();
  }, close);
  box.classList.add('composer-picker');
  $('composer').before(box);
  $('emoji-btn').setAttribute('aria-expanded', 'true');
  box.querySelector('button').focus();
};

// ---- start ----

if ('serviceWorker' in navigator) navigator.serviceWorker.register('/sw.js').catch(() => {});

// The login view shows once its strings are in place.
$('login-view').hidden = false;
const saved = localStorage.getItem(REMEMBER);
if (saved) {
  try {
    const r = JSON.parse(saved);
    $('login-username').value = r.username;
    $('login-remember').checked = true;
    login({ username: r.username, keys: r.keys }, true);
  } catch {
    localStorage.removeItem(REMEMBER);
  }
}
translate();
