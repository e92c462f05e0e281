// Who people are: display names and avatars (vCard, XEP-0054; avatars,
// XEP-0084, with the vCard photo kept in step and its hash in presence,
// XEP-0153; nicknames, XEP-0172), one's own profile, and the people
// directory (XEP-0055 search, XEP-0077 listing on directory.DOMAIN).
// Each profile is fetched once and cached in this browser.

import { NS, x, child, bare, localOf } from './xmpp.js';
import { DOMAIN, formValues } from './ui.js';

export const DIRECTORY = 'directory.' + DOMAIN;
const CACHE = 'poosms.profile.';
const AVATAR = 'poosms.avatar.';
const MAX_AVATAR_CHARS = 200000; // a data URL larger than this is not kept or shown
const FRESH = 24 * 3600 * 1000; // a cached profile is fetched again after a day

// profiles: bare JID -> {name, hash, avatar (data URL), fetched}
const profiles = new Map();
let conn = null;
let changed = () => {};

export function setup(c, onChange) {
  conn = c;
  changed = onChange;
}

function load(jid) {
  let p = profiles.get(jid);
  if (p) return p;
  p = { name: '', hash: '', avatar: '', fetched: false };
  try {
    const c = JSON.parse(localStorage.getItem(CACHE + jid) || 'null');
    if (c) {
      p.name = String(c.name || '');
      p.hash = String(c.hash || '');
      // Fetched in the last day: not again (a new photo hash in presence,
      // or a published nickname, still updates it).
      p.fetched = Date.now() - Number(c.t || 0) < FRESH;
    }
    if (p.hash) p.avatar = localStorage.getItem(AVATAR + p.hash) || '';
    if (p.hash && !p.avatar) p.fetched = false;
  } catch { /* a broken cache entry is ignored */ }
  profiles.set(jid, p);
  return p;
}

function save(jid, p) {
  try {
    localStorage.setItem(CACHE + jid, JSON.stringify({ name: p.name, hash: p.hash, t: Date.now() }));
    if (p.hash && p.avatar) localStorage.setItem(AVATAR + p.hash, p.avatar);
  } catch { /* storage full: the profile is fetched again next time */ }
}

export function profile(jid) { return load(bare(jid)); }

// nameOf is what a person is called here: the name the user gave the
// contact, else the one they gave themselves, else their address.
export function nameOf(jid, rosterName) {
  const b = bare(jid);
  return rosterName || load(b).name || b;
}

export function avatarOf(jid) { return load(bare(jid)).avatar; }

async function sha1hex(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-1', bytes));
  return [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function b64bytes(s) { return Uint8Array.from(atob(s.replace(/\s+/g, '')), (c) => c.charCodeAt(0)); }

const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

// fetchProfile reads someone's vCard (open to every user of the server;
// through the room for an occupant whose address is hidden) once.
export async function fetchProfile(jid, { force = false, via } = {}) {
  const b = via || bare(jid);
  const p = load(b);
  if (p.fetched && !force) return p;
  if (p.fetching) return p.fetching;
  p.fetching = (async () => {
    try {
      const r = await conn.iq('get', via || b, x('vCard', { xmlns: NS.vcard }), 15000);
      const v = child(r, 'vCard', NS.vcard);
      p.name = (child(v, 'NICKNAME')?.textContent || child(v, 'FN')?.textContent || '').trim().slice(0, 100);
      const photo = child(v, 'PHOTO');
      const type = child(photo, 'TYPE')?.textContent.trim() || 'image/png';
      const bin = child(photo, 'BINVAL')?.textContent || '';
      if (bin && IMAGE_TYPES.includes(type) && bin.length < MAX_AVATAR_CHARS) {
        p.hash = await sha1hex(b64bytes(bin));
        p.avatar = 'data:' + type + ';base64,' + bin.replace(/\s+/g, '');
      } else {
        p.hash = '';
        p.avatar = '';
      }
      save(b, p);
    } catch {
      // No vCard, or not allowed: the address stays the name.
    } finally {
      p.fetched = true;
      p.fetching = null;
    }
    changed(b);
    return p;
  })();
  return p.fetching;
}

// presenceHash looks at a presence's photo hash (XEP-0153): a new one
// means a new avatar to fetch.
export function presenceHash(jid, pres, via) {
  const u = child(pres, 'x', NS.vcardUpdate);
  const photo = u && child(u, 'photo');
  if (!photo) return;
  const h = photo.textContent.trim().toLowerCase();
  const p = load(via || bare(jid));
  if (h !== p.hash || !p.fetched) fetchProfile(jid, { force: h !== p.hash, via });
}

// nickEvent takes a nickname a contact published (XEP-0172 over PEP).
export function nickEvent(from, items) {
  const item = child(items, 'item');
  const n = child(item, 'nick', NS.nick)?.textContent.trim();
  if (!n) return;
  const p = load(bare(from));
  p.name = n.slice(0, 100);
  save(bare(from), p);
  changed(bare(from));
}

// ---- one's own profile ----

export let myHash = '';

// loadMine reads the user's own vCard: name and photo hash for presence.
export async function loadMine() {
  const me = bare(conn.jid);
  await fetchProfile(me, { force: true });
  myHash = load(me).hash;
  return load(me);
}

// photoUpdate is the XEP-0153 element for the user's presence.
export function photoUpdate() {
  return x('x', { xmlns: NS.vcardUpdate }, x('photo', {}, myHash || undefined));
}

// squareAvatar draws the part of the image chosen (zoom ≥ 1, offsets
// -1…1 of the room left to move) into a size×size PNG.
export function squareAvatar(img, zoom, ox, oy, size = 128) {
  const c = document.createElement('canvas');
  c.width = c.height = size;
  const side = Math.min(img.naturalWidth, img.naturalHeight) / zoom;
  const sx = (img.naturalWidth - side) / 2 * (1 + ox);
  const sy = (img.naturalHeight - side) / 2 * (1 + oy);
  c.getContext('2d').drawImage(img, sx, sy, side, side, 0, 0, size, size);
  return c;
}

// saveProfile publishes the name and, when given, the avatar (a canvas):
// XEP-0084 data then metadata, the vCard with the same photo, the
// nickname over PEP; the caller sends presence with the new hash after.
export async function saveProfile(name, canvas) {
  const me = bare(conn.jid);
  let vcard;
  try {
    vcard = child(await conn.iq('get', undefined, x('vCard', { xmlns: NS.vcard })), 'vCard', NS.vcard);
  } catch { vcard = null; }
  const keep = [...(vcard?.children || [])].filter((c) => !['FN', 'NICKNAME', 'PHOTO'].includes(c.localName))
    .map((c) => rawXML(new XMLSerializer().serializeToString(c)));
  const p = load(me);
  let photo = null;
  if (canvas) {
    const dataURL = canvas.toDataURL('image/png');
    const b64 = dataURL.slice(dataURL.indexOf(',') + 1);
    const bytes = b64bytes(b64);
    const hash = await sha1hex(bytes);
    await conn.iq('set', undefined, x('pubsub', { xmlns: NS.pubsub },
      x('publish', { node: NS.avatarData }, x('item', { id: hash }, x('data', { xmlns: NS.avatarData }, b64)))));
    await conn.iq('set', undefined, x('pubsub', { xmlns: NS.pubsub },
      x('publish', { node: NS.avatarMeta }, x('item', { id: hash }, x('metadata', { xmlns: NS.avatarMeta },
        x('info', { id: hash, bytes: String(bytes.length), width: String(canvas.width), height: String(canvas.height), type: 'image/png' }))))));
    photo = { type: 'image/png', b64 };
    p.hash = hash;
    p.avatar = dataURL;
  } else if (p.avatar) {
    const i = p.avatar.indexOf(',');
    photo = { type: p.avatar.slice(5, p.avatar.indexOf(';')), b64: p.avatar.slice(i + 1) };
  }
  await conn.iq('set', undefined, x('vCard', { xmlns: NS.vcard },
    name ? x('FN', {}, name) : null, name ? x('NICKNAME', {}, name) : null,
    photo ? x('PHOTO', {}, x('TYPE', {}, photo.type), x('BINVAL', {}, photo.b64)) : null,
    ...keep));
  if (name) {
    await conn.iq('set', undefined, x('pubsub', { xmlns: NS.pubsub },
      x('publish', { node: NS.nick }, x('item', { id: 'current' }, x('nick', { xmlns: NS.nick }, name))))).catch(() => {});
  }
  p.name = name;
  p.fetched = true;
  myHash = p.hash;
  save(me, p);
  changed(me);
}

// rawXML wraps serialized XML so x() keeps it as it is.
function rawXML(s) {
  const r = x('r');
  r.s = s;
  return r;
}

// ---- the directory ----

// listing reads the user's directory entry: null when not listed.
export async function listing() {
  const r = await conn.iq('get', DIRECTORY, x('query', { xmlns: NS.register }));
  const q = child(r, 'query', NS.register);
  if (!child(q, 'registered')) return null;
  const form = child(q, 'x', NS.data);
  return {
    nick: formValues(form, 'nick')[0] || '',
    country: formValues(form, 'country')[0] || '',
    languages: formValues(form, 'languages').join(', '),
    interests: formValues(form, 'interests').join(', '),
  };
}

const lines = (s) => s.split(/[,\n]/).map((v) => v.trim()).filter(Boolean);

// setListing lists the user (opt-in) or, with null, removes the listing.
export async function setListing(entry) {
  if (!entry) {
    await conn.iq('set', DIRECTORY, x('query', { xmlns: NS.register }, x('remove')));
    return;
  }
  const f = (name, ...values) => x('field', { var: name }, values.map((v) => x('value', {}, v)));
  await conn.iq('set', DIRECTORY, x('query', { xmlns: NS.register }, x('x', { xmlns: NS.data, type: 'submit' },
    f('FORM_TYPE', NS.register), f('nick', entry.nick), f('country', entry.country),
    f('languages', ...lines(entry.languages)), f('interests', ...lines(entry.interests)))));
}

// search asks the directory; each result is {jid, nick, country, languages, interests}.
export async function search(criteria) {
  const f = (name, v) => (v ? x('field', { var: name }, x('value', {}, v)) : null);
  const r = await conn.iq('set', DIRECTORY, x('query', { xmlns: NS.search }, x('x', { xmlns: NS.data, type: 'submit' },
    f('FORM_TYPE', NS.search), f('nick', criteria.nick), f('country', criteria.country),
    f('language', criteria.language), f('interest', criteria.interest))));
  const form = child(child(r, 'query', NS.search), 'x', NS.data);
  const out = [];
  for (const item of form?.children || []) {
    if (item.localName !== 'item') continue;
    const row = {};
    for (const fld of item.children) {
      if (fld.localName !== 'field') continue;
      row[fld.getAttribute('var')] = [...fld.children].map((v) => v.textContent).join(', ');
    }
    if (row.jid && bare(row.jid) === row.jid) out.push(row);
  }
  return out;
}

export { localOf };
