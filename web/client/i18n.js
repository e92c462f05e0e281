// Languages of the poosms client: every string a person reads is in one
// file per language (lang-en.js, lang-fr.js); t(key, …args) picks it.
// Another language is one more file and one line in LANGS.

import en from './lang-en.js';
import fr from './lang-fr.js';

const LANGS = { en, fr };
export const languages = [['en', 'English'], ['fr', 'Français']];
const KEY = 'poosms.lang';
let cur = en;
let code = 'en';

function domain() { return document.querySelector('meta[name="poosms-domain"]')?.content || location.hostname; }

// t returns the string for key in the current language (English when the
// language lacks it); a function entry is called with args.
export function t(key, ...args) {
  const v = cur[key] ?? en[key];
  if (v === undefined) return key;
  return typeof v === 'function' ? v(...args) : v;
}

export function lang() { return code; }

// translate fills the elements under root that name a string:
// data-i18n (text), data-i18n-placeholder, data-i18n-label (aria-label),
// data-i18n-title. Static strings get the server's domain as argument.
export function translate(root = document) {
  const d = domain();
  for (const e of root.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n, d);
  for (const e of root.querySelectorAll('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder, d);
  for (const e of root.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel, d));
  for (const e of root.querySelectorAll('[data-i18n-title]')) e.title = t(e.dataset.i18nTitle, d);
}

// setLang switches the language, remembers it and translates the page.
export function setLang(c, remember = true) {
  if (!LANGS[c]) c = 'en';
  code = c;
  cur = LANGS[c];
  document.documentElement.lang = c;
  if (remember) localStorage.setItem(KEY, c);
  translate();
  document.dispatchEvent(new Event('poosms-lang'));
}

// The saved choice, else the browser's first language we have.
export function initialLang() {
  const saved = localStorage.getItem(KEY);
  if (saved && LANGS[saved]) return saved;
  for (const l of navigator.languages || [navigator.language || 'en']) {
    const base = String(l).toLowerCase().split('-')[0];
    if (LANGS[base]) return base;
  }
  return 'en';
}
