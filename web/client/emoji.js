// Emoji for the composer's picker and for reactions (XEP-0444), and the
// text emoticons shown as emoji.

import { el } from './ui.js';
import { t } from './i18n.js';

// The picker's emoji, each with the key of its spoken name.
export const EMOJI = [
  ['😀', 'emGrin'], ['😄', 'emSmile'], ['😂', 'emJoy'], ['🙂', 'emSlight'], ['😉', 'emWink'], ['😍', 'emLove'],
  ['😘', 'emKiss'], ['😎', 'emCool'], ['🤔', 'emThink'], ['😮', 'emWow'], ['😢', 'emCry'], ['😡', 'emAngry'],
  ['😴', 'emSleep'], ['🙁', 'emFrown'], ['😛', 'emTongue'], ['🥳', 'emParty'], ['👍', 'emThumbsUp'], ['👎', 'emThumbsDown'],
  ['👏', 'emClap'], ['🙏', 'emThanks'], ['👋', 'emWave'], ['💪', 'emStrong'], ['❤️', 'emHeart'], ['🔥', 'emFire'],
  ['🎉', 'emTada'], ['⭐', 'emStar'], ['☕', 'emCoffee'], ['🍕', 'emPizza'], ['🎂', 'emCake'], ['✅', 'emCheck'],
];

// The quick reactions offered on a message.
export const REACTIONS = ['👍', '❤️', '😂', '😮', '😢', '🎉'];

export function emojiName(e) {
  const f = EMOJI.find(([c]) => c === e);
  return f ? t(f[1]) : e;
}

// Emoticons become emoji when they stand alone (between spaces or at the
// ends), so addresses and code such as "http://" are left as they are.
const EMOTICONS = {
  ':)': '🙂', ':-)': '🙂', ':D': '😄', ':-D': '😄', ';)': '😉', ';-)': '😉', ':(': '🙁', ':-(': '🙁',
  ':P': '😛', ':-P': '😛', ':p': '😛', ':O': '😮', ':o': '😮', ":'(": '😢', '<3': '❤️', 'B)': '😎', '8)': '😎',
  ':*': '😘', 'XD': '😂', 'xD': '😂',
};
const emoticonRe = new RegExp('(^|\\s)(' + Object.keys(EMOTICONS).map((k) => k.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|') + ')(?=$|\\s)', 'g');

export function emoticons(text) {
  return text.replace(emoticonRe, (m, pre, e) => pre + EMOTICONS[e]);
}

// A reaction is one short emoji-like string; anything else from another
// client is dropped rather than shown.
export function validReaction(r) {
  return typeof r === 'string' && r.length > 0 && r.length <= 16 && !/[\s<>]/.test(r);
}

// picker returns a popup of emoji buttons; choose(e) is called with the
// one chosen. It closes on Escape and when focus leaves it. A redraw
// (a message arriving) replaces it with a new one: focus moves to the
// new one, which stays open.
export function picker(list, label, choose, close) {
  const box = el('div', { class: 'picker', role: 'dialog', 'aria-label': label },
    list.map((e) => el('button', { type: 'button', class: 'emoji', 'aria-label': emojiName(e), title: emojiName(e), onclick: () => choose(e) }, e)));
  box.addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { ev.stopPropagation(); close(); } });
  box.addEventListener('focusout', (ev) => {
    if (box.contains(ev.relatedTarget)) return;
    setTimeout(() => {
      if (box.isConnected) {
        if (!box.contains(document.activeElement)) close();
        return;
      }
      const next = [...document.querySelectorAll('.picker')].find((p) => p.getAttribute('aria-label') === label);
      if (next && (!document.activeElement || document.activeElement === document.body)) next.querySelector('button')?.focus();
    }, 0);
  });
  return box;
}
