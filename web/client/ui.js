// Small helpers shared by the client's modules: elements, the notice
// strip, the domain.

import { t } from './i18n.js';

export const $ = (id) => document.getElementById(id);
export const meta = (n) => document.querySelector(`meta[name="${n}"]`)?.content || '';
export const DOMAIN = meta('poosms-domain') || location.hostname;
export const CONFERENCE = 'conference.' + DOMAIN;

// el builds an element: el('button', {class, onclick, 'aria-label'}, ...children).
export function el(tag, props = {}, ...children) {
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

// banner shows a notice in its own strip above the app (it never covers
// a control); it fades after 5 s unless sticky.
let bannerTimer;
export function banner(text, sticky) {
  const b = $('banner');
  b.textContent = text;
  b.hidden = !text;
  clearTimeout(bannerTimer);
  if (text && !sticky) bannerTimer = setTimeout(() => { b.hidden = true; }, 5000);
}

// size formats a byte count for people.
export function size(n) {
  if (!(n >= 0)) return '';
  const units = [t('unitB'), t('unitKB'), t('unitMB'), t('unitGB')];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 1 : 0)) + ' ' + units[i];
}

// field reads the values of a data form (XEP-0004) field by var.
export function formValues(form, name) {
  for (const f of form?.children || []) {
    if (f.localName === 'field' && f.getAttribute('var') === name) {
      return [...f.children].filter((v) => v.localName === 'value').map((v) => v.textContent);
    }
  }
  return [];
}
