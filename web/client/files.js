// Files and pictures: HTTP File Upload (XEP-0363) on upload.DOMAIN with a
// progress bar and a cancel, and messages carrying the URL as XEP-0066
// out-of-band data plus the URL as body, as other clients send them.

import { NS, x, child } from './xmpp.js';
import { DOMAIN, meta, size } from './ui.js';
import { t } from './i18n.js';

export const UPLOAD = 'upload.' + DOMAIN;
const IMAGE_EXT = /\.(png|jpe?g|gif|webp|avif|bmp)$/i;

// UploadError carries a sentence a person understands.
export class UploadError extends Error {}

// uploadError turns a refused slot request into that sentence.
function slotError(e, file) {
  if (e.condition === 'not-acceptable' && e.el?.querySelector('file-too-large')) {
    const max = Number(e.el.querySelector('max-file-size')?.textContent);
    return new UploadError(t('uploadTooLarge', file.name, size(file.size), max ? size(max) : ''));
  }
  if (e.condition === 'resource-constraint') return new UploadError(t('uploadQuota', file.name));
  if (e.condition === 'timeout') return new UploadError(t('uploadNoAnswer'));
  return new UploadError(t('uploadRefused', file.name, e.condition || e.message));
}

function putError(status, file) {
  if (status === 507) return new UploadError(t('uploadQuota', file.name));
  if (status === 413) return new UploadError(t('uploadTooLarge', file.name, size(file.size), ''));
  if (status === 403) return new UploadError(t('uploadExpired'));
  return new UploadError(t('uploadFailed', file.name, status ? String(status) : t('uploadNetwork')));
}

// Upload sends one file: progress(fraction) while it goes, done() with
// the GET URL, and cancel() to stop it.
export class Upload {
  constructor(conn, file) {
    this.conn = conn;
    this.file = file;
    this.xhr = null;
    this.cancelled = false;
    this.onprogress = () => {};
  }

  async run() {
    const f = this.file;
    let slot;
    try {
      const r = await this.conn.iq('get', UPLOAD, x('request', {
        xmlns: NS.upload, filename: f.name || 'file', size: String(f.size), 'content-type': f.type || undefined,
      }), 20000);
      slot = child(r, 'slot', NS.upload);
    } catch (e) {
      throw slotError(e, f);
    }
    if (this.cancelled) throw new UploadError(t('uploadCancelled'));
    const put = child(slot, 'put')?.getAttribute('url');
    const get = child(slot, 'get')?.getAttribute('url');
    if (!put || !get || !/^https?:/.test(put) || !/^https?:/.test(get)) throw new UploadError(t('uploadRefused', f.name, 'bad slot'));
    await new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      this.xhr = xhr;
      xhr.open('PUT', put);
      for (const h of child(slot, 'put').children) {
        const n = h.getAttribute('name');
        if (h.localName === 'header' && ['Authorization', 'Cookie', 'Expires'].includes(n)) xhr.setRequestHeader(n, h.textContent.replace(/[\r\n]/g, ''));
      }
      if (f.type) xhr.setRequestHeader('Content-Type', f.type);
      xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) this.onprogress(ev.loaded / ev.total); };
      xhr.onload = () => (xhr.status >= 200 && xhr.status < 300 ? resolve() : reject(putError(xhr.status, f)));
      xhr.onerror = () => reject(putError(0, f));
      xhr.onabort = () => reject(new UploadError(t('uploadCancelled')));
      xhr.send(f);
    });
    return get;
  }

  cancel() {
    this.cancelled = true;
    this.xhr?.abort();
  }
}

// fileMessage is the payload of a message that shares url.
export function fileMessage(url) {
  return [x('body', {}, url), x('x', { xmlns: NS.oob }, x('url', {}, url))];
}

// fileOf reads a shared file from a message: the OOB URL when the body is
// that URL (or empty), so a message with a link and words stays text.
export function fileOf(m) {
  const oob = child(m, 'x', NS.oob);
  const url = child(oob, 'url')?.textContent.trim();
  if (!url || !/^https?:\/\//i.test(url)) return null;
  const body = (child(m, 'body')?.textContent || '').trim();
  if (body && body !== url) return null;
  return describe(url, child(oob, 'desc')?.textContent);
}

// describe names a file by its URL.
export function describe(url, desc) {
  let name = 'file';
  try {
    const u = new URL(url);
    name = decodeURIComponent(u.pathname.split('/').filter(Boolean).pop() || u.hostname);
  } catch { /* kept as "file" */ }
  return { url, name, desc: desc || '', image: IMAGE_EXT.test(name) };
}

// shownInline says whether a picture may be shown in the page: only from
// this server (the page's policy lets images come from there only, and
// other servers would learn who looks at it).
export function shownInline(url) {
  try {
    const o = new URL(url).origin;
    return o === location.origin || o === meta('poosms-upload');
  } catch { return false; }
}

// sizes of files on this server, asked once each.
const sizes = new Map();
export function sizeOf(url, then) {
  if (!shownInline(url)) return '';
  if (sizes.has(url)) return sizes.get(url);
  sizes.set(url, '');
  fetch(url, { method: 'HEAD', credentials: 'omit', referrerPolicy: 'no-referrer' }).then((r) => {
    const n = Number(r.headers.get('Content-Length'));
    if (r.ok && n >= 0) { sizes.set(url, size(n)); then(); }
  }).catch(() => {});
  return '';
}
