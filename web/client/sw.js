// The poosms client's service worker: it keeps the app shell (the page
// and the files of this version) so the app opens at once, and without
// network it still opens and says it is offline. The server fills in
// VERSION and SHELL when it serves this file at /sw.js.

const VERSION = "{{VERSION}}";
const SHELL = ["{{SHELL}}"];
const CACHE = 'poosms-shell-' + VERSION;

self.addEventListener('install', (ev) => {
  ev.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (ev) => {
  ev.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k.startsWith('poosms-shell-') && k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (ev) => {
  const req = ev.request;
  if (req.method !== 'GET') return;
  const url = new URL(req.url);
  if (url.origin !== location.origin) return;
  if (url.pathname.startsWith('/client/v/')) {
    // Named by version: never changes, so the cache answers first.
    ev.respondWith(caches.match(req).then((hit) => hit || fetch(req)));
    return;
  }
  if (req.mode === 'navigate' && url.pathname === '/') {
    // The page: at once from the cache, refreshed from the network for
    // next time; from the network when not cached yet.
    ev.respondWith(caches.open(CACHE).then(async (c) => {
      const hit = await c.match('/');
      const fresh = fetch(req).then((res) => {
        if (res.ok) c.put('/', res.clone());
        return res;
      });
      if (hit) {
        ev.waitUntil(fresh.catch(() => {}));
        return hit;
      }
      return fresh.catch(() => new Response('<!doctype html><meta charset="utf-8"><title>Offline</title><p>Offline.', {
        status: 503, headers: { 'Content-Type': 'text/html; charset=utf-8' },
      }));
    }));
  }
});
