// The poosms browser client: login and sign-up, contacts with presence,
// one-to-one chat, rooms and conference calls.

import { Connection, NS, x, child, bare, localOf, resourceOf, newId, StanzaError } from './xmpp.js';
import { Call } from './call.js';

const $ = (id) => document.getElementById(id);
const meta = (n) => document.querySelector(`meta[name="${n}"]`)?.content || '';
const DOMAIN = meta('poosms-domain') || location.hostname;
const CONFERENCE = 'conference.' + DOMAIN;
const REMEMBER = 'poosms.remember';

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) e.append(c);
  return e;
}

const SHOW_TEXT = { available: 'Available', chat: 'Available', away: 'Away', xa: 'Away', dnd: 'Do not disturb', offline: 'Offline' };

const state = {
  conn: null,
  roster: new Map(), // bare -> {jid, name, subscription, ask}
  presence: new Map(), // bare -> Map(resource -> {show, status})
  requests: new Set(),
  chats: new Map(), // bare -> {messages: [], unread, typing}
  rooms: new Map(), // room bare -> {joined, available: bool|null, nick, self: in the room now, waiters}
  open: null, // {kind: 'chat'|'room', jid}
  call: null,
};

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
  if (!username || !password) { $('login-error').textContent = 'Please enter your username and password.'; return; }
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
    if (!csrf) throw new Error('Sign-up is closed on this server.');
    const res = await fetch('/register', {
      method: 'POST', credentials: 'same-origin',
      body: new URLSearchParams({ csrf, username, password, confirm }),
    });
    const out = new DOMParser().parseFromString(await res.text(), 'text/html');
    if (!res.ok) {
      const items = [...out.querySelectorAll('.errors li')].map((li) => li.textContent);
      errBox.replaceChildren(el('ul', {}, (items.length ? items : ['Your account was not created.']).map((t) => el('li', {}, t))));
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

async function login(creds, remember) {
  const err = $('login-error');
  err.textContent = '';
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const conn = new Connection({ url: `${proto}//${location.host}/xmpp-websocket`, domain: DOMAIN });
  conn.addEventListener('status', (ev) => onStatus(ev.detail));
  try {
    const keys = await conn.login(creds);
    if (remember) localStorage.setItem(REMEMBER, JSON.stringify({ username: creds.username, keys }));
  } catch (e) {
    showLogin();
    err.textContent = e.message;
    if (e instanceof StanzaError) localStorage.removeItem(REMEMBER);
    return;
  }
  state.conn = conn;
  window.poosms = { conn, state }; // for debugging and tests
  conn.addEventListener('stanza', (ev) => onStanza(ev.detail));
  conn.addEventListener('acked', (ev) => setDelivery(ev.detail, 'sent'));
  conn.addEventListener('resumed', (ev) => { if (!ev.detail.resumed) startSession(); });
  conn.onIq(NS.roster, 'query', (iq, q) => {
    const from = iq.getAttribute('from');
    if (from && bare(from) !== bare(conn.jid)) throw new StanzaError('forbidden');
    rosterItems(q);
    return '';
  });
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('me').textContent = bare(conn.jid);
  $('login-password').value = '';
  await startSession();
}

// startSession fetches the roster and goes online (again after a new session).
async function startSession() {
  const conn = state.conn;
  try {
    const r = await conn.iq('get', undefined, x('query', { xmlns: NS.roster }));
    state.roster.clear();
    rosterItems(child(r, 'query', NS.roster));
  } catch (e) {
    banner('Could not load your contacts: ' + e.message);
  }
  state.presence.clear();
  sendPresence();
  for (const [room, r] of state.rooms) if (r.joined) joinRoomChat(room);
  if (state.call) {
    state.call.stop('The connection was lost and the call ended. Join again.', 'stream-closed');
  }
  render();
}

function sendPresence() {
  const show = $('my-show').value;
  const status = $('my-status').value.trim();
  state.conn.send(x('presence', {}, show && x('show', {}, show), status && x('status', {}, status)));
}
$('my-show').onchange = sendPresence;
$('my-status').onchange = sendPresence;
$('my-status').addEventListener('keydown', (ev) => { if (ev.key === 'Enter') $('my-status').blur(); });

$('logout').onclick = () => {
  localStorage.removeItem(REMEMBER);
  state.call?.leave();
  state.conn?.logout();
  location.reload();
};

function showLogin() {
  $('login-view').hidden = false;
  $('app-view').hidden = true;
}

let bannerTimer;
function banner(text, sticky) {
  const b = $('banner');
  b.textContent = text;
  b.hidden = !text;
  clearTimeout(bannerTimer);
  if (text && !sticky) bannerTimer = setTimeout(() => { b.hidden = true; }, 5000);
}

function onStatus({ state: s, message }) {
  document.body.dataset.connection = s;
  if (s === 'reconnecting') banner(message, true);
  else if (s === 'online' && message.startsWith('Reconnected')) banner(message);
  else if (s === 'offline' && !$('app-view').hidden) {
    banner(message, true);
    if (message !== 'Logged out') showLogin();
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
  }
  render();
}

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
      } else state.requests.add(b);
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
      break;
    }
  }
  render();
}

$('add-contact').onsubmit = async (ev) => {
  ev.preventDefault();
  let jid = $('add-jid').value.trim().toLowerCase();
  if (!jid) return;
  if (!jid.includes('@')) jid += '@' + DOMAIN;
  try {
    await state.conn.iq('set', undefined, x('query', { xmlns: NS.roster }, x('item', { jid })));
    state.conn.send(x('presence', { to: jid, type: 'subscribe' }));
    $('add-jid').value = '';
    banner(`Asked ${jid} to share their presence with you.`);
  } catch (e) {
    banner('Could not add the contact: ' + e.message);
  }
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
    btn.textContent = `Really remove ${jid}?`;
    return;
  }
  delete btn.dataset.confirm;
  btn.textContent = 'Remove contact';
  try {
    await state.conn.iq('set', undefined, x('query', { xmlns: NS.roster }, x('item', { jid, subscription: 'remove' })));
    closePane();
  } catch (e) {
    banner('Could not remove the contact: ' + e.message);
  }
};

// ---- messages ----

function chatOf(jid) {
  let c = state.chats.get(jid);
  if (!c) state.chats.set(jid, c = { messages: [], unread: 0, typing: '' });
  return c;
}

function onStanza(s) {
  if (s.localName === 'presence') return onPresence(s);
  if (s.localName !== 'message') return;
  const from = s.getAttribute('from') || '';
  const type = s.getAttribute('type') || 'normal';
  const b = bare(from);
  if (type === 'headline') return;
  if (child(s, 'result', NS.mam)) return; // history pages, see loadHistory
  if (type === 'error') {
    const id = s.getAttribute('id');
    const cond = s.querySelector('error')?.firstElementChild?.localName || 'error';
    setDelivery(id, 'failed', cond);
    if (state.rooms.has(b)) roomUnavailable(b);
    return;
  }
  if (type === 'groupchat') return roomMessage(s, b, resourceOf(from));
  const received = child(s, 'received', NS.receipts);
  if (received) setDelivery(received.getAttribute('id'), 'delivered');
  const body = child(s, 'body')?.textContent;
  const c = chatOf(b);
  const cs = [...s.children].find((e) => e.namespaceURI === NS.chatstates);
  const delay = child(s, 'delay', NS.delay);
  if (cs && !delay) {
    c.typing = cs.localName === 'composing' ? 'typing' : cs.localName === 'paused' ? 'paused' : '';
    // A "composing" that is never followed up fades after 30 seconds.
    clearTimeout(c.typingTimer);
    if (c.typing === 'typing') c.typingTimer = setTimeout(() => { c.typing = ''; render(); }, 30000);
  }
  if (body) {
    const id = s.getAttribute('id') || newId('m');
    if (!c.messages.some((m) => m.dir === 'in' && m.id === id)) {
      c.messages.push({ id, from, dir: 'in', body, time: delay ? new Date(delay.getAttribute('stamp')) : new Date(), delayed: !!delay });
      c.messages.sort((p, q) => p.time - q.time);
      c.typing = '';
      if (!(state.open?.jid === b && !document.hidden)) c.unread++;
    }
    if (child(s, 'request', NS.receipts) && s.getAttribute('id')) {
      state.conn.send(x('message', { to: from, id: newId('r') }, x('received', { xmlns: NS.receipts, id: s.getAttribute('id') })));
    }
  }
  render();
}

function setDelivery(id, st, why) {
  if (!id) return;
  const order = { sending: 0, sent: 1, delivered: 2, failed: 3 };
  for (const c of [...state.chats.values(), ...state.rooms.values()]) {
    for (const m of c.messages || []) {
      if (m.id === id && m.dir === 'out' && order[st] > order[m.state]) {
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
});

$('composer').onsubmit = (ev) => {
  ev.preventDefault();
  const body = $('compose').value.trim();
  if (!body || !state.open) return;
  $('compose').value = '';
  clearTimeout(pauseTimer);
  composing = false;
  const id = newId('m');
  const { kind, jid } = state.open;
  if (kind === 'room') {
    state.conn.send(x('message', { to: jid, type: 'groupchat', id }, x('body', {}, body)), id);
    // The room echoes our message back; it is shown then.
    return;
  }
  chatOf(jid).messages.push({ id, from: state.conn.jid, dir: 'out', body, time: new Date(), state: 'sending' });
  state.conn.send(x('message', { to: jid, type: 'chat', id },
    x('body', {}, body), x('active', { xmlns: NS.chatstates }), x('request', { xmlns: NS.receipts })), id);
  render();
};

// loadHistory fetches the last messages with jid from the server's
// archive (XEP-0313) the first time the conversation opens.
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
      x('set', { xmlns: NS.rsm }, x('max', {}, '50'), x('before', {}))));
  } catch {
    // No archive on this server: only this page's messages are shown.
  } finally {
    conn.removeEventListener('stanza', collect);
    c.loading = false;
    c.loaded = true;
  }
  for (const { m, stamp, sid } of page) {
    const body = child(m, 'body')?.textContent;
    if (!body) continue;
    const mine = bare(m.getAttribute('from')) === bare(conn.jid);
    const dir = mine ? 'out' : 'in';
    const id = m.getAttribute('id') || sid;
    if (c.messages.some((o) => o.dir === dir && o.id === id)) continue;
    c.messages.push({ id, from: m.getAttribute('from'), dir, body, time: new Date(stamp), state: mine ? 'sent' : undefined });
  }
  c.messages.sort((p, q) => p.time - q.time);
  render();
}

function markRead(jid) {
  const c = state.chats.get(jid) || state.rooms.get(jid);
  if (c && c.unread) { c.unread = 0; render(); }
}

// ---- rooms ----

$('join-room').onsubmit = (ev) => {
  ev.preventDefault();
  let name = $('room-name').value.trim().toLowerCase();
  if (!name) return;
  if (!name.includes('@')) name += '@' + CONFERENCE;
  $('room-name').value = '';
  if (!state.rooms.has(name)) state.rooms.set(name, { messages: [], unread: 0, joined: true, available: null, occupants: new Set() });
  joinRoomChat(name);
  openPane('room', name);
};

function joinRoomChat(room) {
  const r = state.rooms.get(room);
  r.nick = localOf(state.conn.jid);
  r.available = null;
  state.conn.send(x('presence', { to: room + '/' + r.nick }, x('x', { xmlns: NS.muc }, x('history', { maxstanzas: 50 }))));
  clearTimeout(r.timer);
  r.timer = setTimeout(() => { if (r.available === null) roomUnavailable(room); }, 8000);
}

function roomUnavailable(room) {
  const r = state.rooms.get(room);
  if (!r || r.available === false) return;
  r.available = false;
  r.self = false;
  settle(r);
  render();
}

// settle tells whoever waits to be in room r whether we are.
function settle(r) {
  for (const done of [...(r.waiters || [])]) done(!!r.self);
}

// entered resolves to true once we are in the room (our own presence came
// back), to false when the room refused us or nothing came within ms: a
// room's call is for those in the room.
function entered(room, ms) {
  const r = state.rooms.get(room);
  if (!r) return Promise.resolve(false);
  if (r.self) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok) => { clearTimeout(timer); r.waiters.delete(done); resolve(ok); };
    const timer = setTimeout(() => done(false), ms);
    (r.waiters ||= new Set()).add(done);
  });
}

function roomPresence(p, room, type) {
  const r = state.rooms.get(room);
  if (!r) return;
  const nick = resourceOf(p.getAttribute('from'));
  if (type === 'error') {
    // A room its creator has not set up yet refuses others for a moment.
    const cond = child(p, 'error')?.firstElementChild?.localName;
    if (cond === 'item-not-found' && !r.retried) {
      r.retried = true;
      setTimeout(() => joinRoomChat(room), 3000);
      return;
    }
    roomUnavailable(room);
    return;
  }
  const mu = child(p, 'x', NS.mucUser);
  if (!mu) return;
  r.available = true;
  r.retried = false;
  if (type === 'unavailable') r.occupants.delete(nick); else r.occupants.add(nick);
  const codes = [...mu.children].filter((c) => c.localName === 'status').map((c) => c.getAttribute('code'));
  if (codes.includes('110') || nick === r.nick) {
    r.self = type !== 'unavailable';
    settle(r);
  }
  if (type !== 'unavailable' && codes.includes('201') && (codes.includes('110') || nick === r.nick)) {
    // We created the room: accept the default configuration (an instant
    // room) so others may enter and call.
    state.conn.iq('set', room, x('query', { xmlns: NS.mucOwner }, x('x', { xmlns: 'jabber:x:data', type: 'submit' })))
      .catch((e) => banner('Could not set up the room: ' + e.message));
  }
  render();
}

function roomMessage(s, room, nick) {
  const r = state.rooms.get(room);
  if (!r) return;
  r.available = true;
  const body = child(s, 'body')?.textContent;
  if (!body) return;
  const delay = child(s, 'delay', NS.delay);
  const mine = nick === r.nick;
  const id = s.getAttribute('id') || newId('g');
  if (mine) setDelivery(id, 'delivered');
  if (r.messages.some((m) => m.id === id && m.from === nick)) return;
  r.messages.push({ id, from: nick, dir: mine ? 'out' : 'in', body, time: delay ? new Date(delay.getAttribute('stamp')) : new Date(), state: mine ? 'delivered' : undefined });
  r.messages.sort((p, q) => p.time - q.time);
  if (!(state.open?.jid === room && !document.hidden)) r.unread++;
  render();
}

// ---- panes ----

function openPane(kind, jid) {
  state.open = { kind, jid };
  delete $('remove-contact').dataset.confirm;
  $('remove-contact').textContent = 'Remove contact';
  composing = false;
  document.body.classList.add('pane-open');
  markRead(jid);
  render();
  if (kind === 'chat') loadHistory(jid);
  $('compose').focus();
}

function closePane() {
  state.open = null;
  document.body.classList.remove('pane-open');
  render();
}
$('back').onclick = closePane;

// ---- calls ----

$('call-btn').onclick = () => {
  if (state.call || state.open?.kind !== 'room') return;
  startCall(state.open.jid, 0);
};

// A call the server ended because its media could not be set up is
// joined again by itself, a few times.
const REJOIN = new Set(['negotiation-failed', 'connect-timeout', 'connection-failed']);

// The server lets into a room's call only those in the room: the call
// waits (a few seconds at most) for the room to let us in.
async function startCall(room, attempt) {
  const call = new Call(state.conn, room);
  state.call = call;
  call.addEventListener('change', renderCall);
  call.addEventListener('notice', (ev) => callNotice(ev.detail));
  call.addEventListener('ended', (ev) => {
    if (state.call === call) state.call = null;
    $('grid').replaceChildren();
    if (REJOIN.has(ev.detail.reason) && attempt < 3 && state.conn.state === 'online') {
      banner('The call connection failed; joining again…');
      startCall(room, attempt + 1);
      return;
    }
    banner(ev.detail.text);
    render();
  });
  callNotice('');
  render();
  try {
    if (!(await entered(room, 12000))) throw new Error('you are not in this room (it refused you or did not answer)');
    await call.start();
  } catch (e) {
    call.stop('Could not join the call: ' + (e.message || e.condition));
  }
}
$('leave-btn').onclick = () => state.call?.leave();
$('mute-btn').onclick = () => state.call?.setMuted(!state.call.muted);
$('camera-btn').onclick = () => state.call?.setCameraOff(!state.call.cameraOff);
$('screen-btn').onclick = () => state.call?.toggleScreen();

function callNotice(text) {
  $('call-notice').textContent = text;
  $('call-notice').hidden = !text;
}

function tile(key, label, stream, muted) {
  let t = $('grid').querySelector(`.tile[data-key="${CSS.escape(key)}"]`);
  if (!t) {
    const v = el('video', { autoplay: true, playsinline: true });
    v.muted = muted;
    t = el('figure', { class: 'tile', dataset: { key } }, v, el('figcaption'));
    $('grid').append(t);
  }
  const v = t.querySelector('video');
  if (v.srcObject !== stream) v.srcObject = stream;
  v.play?.().catch(() => {});
  t.querySelector('figcaption').textContent = label;
  return t;
}

function renderCall() {
  const call = state.call;
  const view = $('call-view');
  const show = !!call && state.open?.jid === call.room;
  view.hidden = !show;
  if (!call) return;
  const keep = new Set(['self']);
  if (call.local) {
    const t = tile('self', 'You' + (call.muted ? ' (muted)' : '') + (call.local.getVideoTracks().length ? '' : ' (no camera)'), call.local, true);
    t.dataset.participant = call.self || '';
    t.classList.toggle('speaking', !!call.self && call.speaker === call.self);
  }
  for (const p of call.participants.values()) {
    keep.add(p.id);
    // As the room shows them: the nickname; the address only to those
    // the room lets see it.
    const nick = resourceOf(p.occupant);
    const t = tile(p.id, nick || localOf(p.jid) || 'Someone', p.stream, false);
    t.dataset.participant = p.id;
    t.dataset.nick = nick;
    t.dataset.jid = p.jid;
    t.classList.toggle('speaking', call.speaker === p.id);
  }
  for (const t of [...$('grid').children]) if (!keep.has(t.dataset.key)) t.remove();
  $('grid').dataset.count = String($('grid').children.length);
  const hasAudio = !!call.local?.getAudioTracks().length;
  const hasVideo = !!call.local?.getVideoTracks().length;
  $('mute-btn').disabled = !hasAudio;
  $('camera-btn').disabled = !hasVideo;
  $('screen-btn').disabled = !hasVideo;
  $('mute-btn').textContent = call.muted ? 'Unmute' : 'Mute';
  $('mute-btn').setAttribute('aria-pressed', String(call.muted));
  $('camera-btn').textContent = call.cameraOff ? 'Camera on' : 'Camera off';
  $('camera-btn').setAttribute('aria-pressed', String(call.cameraOff));
  $('screen-btn').textContent = call.sharing ? 'Stop sharing' : 'Share screen';
  $('screen-btn').setAttribute('aria-pressed', String(!!call.sharing));
}

// ---- rendering ----

const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' });
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const DELIVERY = { sending: 'Sending…', sent: 'Sent', delivered: 'Delivered', failed: 'Not delivered' };

function render() {
  const reqs = [...state.requests];
  $('requests-box').hidden = reqs.length === 0;
  $('requests').replaceChildren(...reqs.map((jid) => el('li', { dataset: { jid } },
    el('span', { class: 'name' }, jid, ' wants to add you'),
    el('button', { type: 'button', class: 'accept', onclick: () => acceptRequest(jid) }, 'Accept'),
    el('button', { type: 'button', class: 'refuse', onclick: () => refuseRequest(jid) }, 'Refuse'))));

  const contacts = [...state.roster.values()].sort((a, b) => (a.name || a.jid).localeCompare(b.name || b.jid));
  $('no-contacts').hidden = contacts.length > 0;
  $('contacts').replaceChildren(...contacts.map((it) => {
    const p = presenceOf(it.jid);
    const unread = state.chats.get(it.jid)?.unread || 0;
    const pending = it.subscription === 'none' || it.subscription === 'from' ? (it.ask ? 'request sent' : 'not sharing presence') : '';
    return el('li', { dataset: { jid: it.jid, presence: p.show }, class: state.open?.jid === it.jid ? 'current' : '' },
      el('button', { type: 'button', class: 'open', onclick: () => openPane('chat', it.jid),
        'aria-label': `${it.name || it.jid}, ${SHOW_TEXT[p.show] || p.show}${unread ? `, ${unread} unread` : ''}` },
      el('span', { class: 'dot ' + p.show, 'aria-hidden': 'true' }),
      el('span', { class: 'name' }, it.name || it.jid),
      el('span', { class: 'status' }, pending || p.status || SHOW_TEXT[p.show] || p.show),
      unread ? el('span', { class: 'unread', 'aria-hidden': 'true' }, String(unread)) : null));
  }));

  $('rooms').replaceChildren(...[...state.rooms.entries()].map(([jid, r]) => el('li', { dataset: { jid }, class: state.open?.jid === jid ? 'current' : '' },
    el('button', { type: 'button', class: 'open', onclick: () => openPane('room', jid) },
      el('span', { class: 'name' }, localOf(jid)),
      state.call?.room === jid ? el('span', { class: 'status' }, 'in call') : null,
      r.unread ? el('span', { class: 'unread' }, String(r.unread)) : null))));

  const total = [...state.chats.values(), ...state.rooms.values()].reduce((n, c) => n + (c.unread || 0), 0);
  document.title = (total ? `(${total}) ` : '') + DOMAIN + ' messenger';

  const open = state.open;
  $('empty').hidden = !!open;
  $('chat-view').hidden = !open;
  if (open) {
    const isRoom = open.kind === 'room';
    const r = isRoom ? state.rooms.get(open.jid) : null;
    const c = isRoom ? r : chatOf(open.jid);
    $('chat-title').textContent = isRoom ? '#' + localOf(open.jid) : (state.roster.get(open.jid)?.name || open.jid);
    const p = isRoom ? null : presenceOf(open.jid);
    $('chat-presence').textContent = isRoom ? (r.available ? `${r.occupants.size} in the room` : '') : `${SHOW_TEXT[p.show] || p.show}${p.status ? ' — ' + p.status : ''}`;
    $('call-btn').hidden = !isRoom || !!state.call;
    $('remove-contact').hidden = isRoom || !state.roster.has(open.jid);
    $('room-note').hidden = !(isRoom && r.available === false);
    $('room-note').textContent = 'You could not enter this room, so its chat and its call are not available.';
    $('composer').hidden = isRoom && r.available === false;
    $('typing').textContent = !isRoom && c.typing === 'typing' ? `${localOf(open.jid)} is typing…` : '';
    renderMessages(c.messages, isRoom);
    if (!document.hidden) c.unread = 0;
  }
  renderCall();
}

function renderMessages(list, isRoom) {
  const ol = $('messages');
  const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
  const items = [];
  let day = '';
  for (const m of list) {
    const d = dayFmt.format(m.time);
    if (d !== day) { day = d; items.push(el('li', { class: 'day' }, d)); }
    items.push(el('li', { class: 'msg ' + m.dir, dataset: { id: m.id, state: m.state || '' } },
      isRoom && m.dir === 'in' ? el('span', { class: 'who' }, m.from) : null,
      el('span', { class: 'body' }, m.body),
      el('span', { class: 'meta' },
        el('time', { datetime: m.time.toISOString(), title: m.time.toLocaleString() }, timeFmt.format(m.time)),
        m.delayed ? ' · sent while you were away' : '',
        m.dir === 'out' && m.state ? ' · ' + DELIVERY[m.state] + (m.why ? ` (${m.why})` : '') : '')));
  }
  ol.replaceChildren(...items);
  if (atBottom) ol.scrollTop = ol.scrollHeight;
}

// ---- start ----

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
