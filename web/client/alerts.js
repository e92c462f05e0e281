// Getting a person's attention: desktop notifications, short sounds
// (made with Web Audio, no files) and the unread count on the app icon,
// each with a setting; sounds respect the page's mute setting and the
// browser's autoplay rules (no sound before the page may play one).

const SETTINGS = 'poosms.settings';
const defaults = { notify: false, sound: true, badge: true };
export const settings = { ...defaults };
try { Object.assign(settings, JSON.parse(localStorage.getItem(SETTINGS) || '{}')); } catch { /* defaults */ }

export function setSetting(name, on) {
  settings[name] = !!on;
  localStorage.setItem(SETTINGS, JSON.stringify(settings));
}

// played lists the sounds played, newest last (for diagnosis).
export const played = [];

let audio = null;
function context() {
  if (!audio) {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return null;
    audio = new AC();
  }
  return audio;
}
// The browser lets a page play sound once the person has interacted with it.
for (const ev of ['pointerdown', 'keydown']) {
  window.addEventListener(ev, () => { const c = context(); if (c?.state === 'suspended') c.resume().catch(() => {}); }, { capture: true });
}

const TUNES = {
  message: [[660, 0, 0.08], [880, 0.1, 0.1]],
  nudge: [[180, 0, 0.09], [140, 0.11, 0.09], [180, 0.22, 0.12]],
  ring: [[520, 0, 0.25], [660, 0.3, 0.25], [520, 0.9, 0.25], [660, 1.2, 0.25]],
};

// sound plays a short tune when sounds are on and the page may play.
export function sound(name) {
  if (!settings.sound) return false;
  const c = context();
  if (!c) return false;
  // A page that may not play yet stays silent (the browser decides).
  if (c.state !== 'running') {
    const asked = Date.now();
    c.resume().then(() => { if (c.state === 'running' && Date.now() - asked < 1000) play(c, name); }).catch(() => {});
    return false;
  }
  play(c, name);
  return true;
}

function play(c, name) {
  const t0 = c.currentTime + 0.01;
  for (const [freq, at, len] of TUNES[name] || []) {
    const o = c.createOscillator();
    const g = c.createGain();
    o.frequency.value = freq;
    o.type = name === 'nudge' ? 'square' : 'sine';
    g.gain.setValueAtTime(0.0001, t0 + at);
    g.gain.exponentialRampToValueAtTime(0.2, t0 + at + 0.02);
    g.gain.exponentialRampToValueAtTime(0.0001, t0 + at + len);
    o.connect(g).connect(c.destination);
    o.start(t0 + at);
    o.stop(t0 + at + len + 0.05);
  }
  played.push(name);
  if (played.length > 50) played.shift();
}

// notify shows a desktop notification while the page is hidden, when the
// person allowed them; clicking it brings the page back.
export function notify(title, body, tag, onclick) {
  if (!settings.notify || !document.hidden || !('Notification' in window) || Notification.permission !== 'granted') return null;
  try {
    const n = new Notification(title, { body, tag, icon: document.querySelector('link[rel=icon]')?.href });
    n.onclick = () => { window.focus(); onclick?.(); n.close(); };
    return n;
  } catch {
    return null; // some browsers allow notifications from a service worker only
  }
}

export async function askPermission() {
  if (!('Notification' in window)) return 'unsupported';
  if (Notification.permission !== 'default') return Notification.permission;
  return Notification.requestPermission();
}

// badge puts the unread count on the app's icon where the browser can.
let lastBadge = -1;
export function badge(n) {
  if (!settings.badge) n = 0;
  if (n === lastBadge || !navigator.setAppBadge) return;
  lastBadge = n;
  (n ? navigator.setAppBadge(n) : navigator.clearAppBadge()).catch(() => {});
}
