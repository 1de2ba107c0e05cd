// Small helpers that build the pages' DOM. Text always goes in as text (never as HTML): ids and
// payloads come from whoever sent the webhooks.

/** `h('a', {href, class: 'x', onclick}, 'text', child…)`: an element. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  el.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  if (loadingIn(el)) el.setAttribute('aria-busy', 'true');
  return el;
}

// A region that holds a "Loading…" note is aria-busy until its data (or an empty or error state)
// takes the note's place: what `h` and `fill` put in an element says so, and nothing else need.
const loadingIn = (el) => el.firstElementChild?.classList.contains('note-loading');

/** Replaces the children of `el`, keeping the keyboard focus where it was (see `swap`). */
export const fill = (el, ...children) => {
  const place = focusPlace(el);
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  if (loadingIn(el)) el.setAttribute('aria-busy', 'true');
  else el.removeAttribute('aria-busy');
  refocus(el, place);
  return el;
};

/** Puts `fresh` in the place of `old`, keeping the keyboard focus where it was. */
export function swap(old, fresh) {
  const place = focusPlace(old);
  old.replaceWith(fresh);
  refocus(fresh, place);
}

// A live update or a refresh redraws a part of the page while someone may be working in it with
// the keyboard: the focus goes back to the same control of the same row (`data-key`; a control
// with a `data-key` of its own goes back to itself), or of the part when the row has no key,
// instead of falling to <body>. A row that is gone (an account no longer failing) leaves the
// focus on the row that took its place, or the last one.
const FOCUSABLE = 'a[href], button, input, select, textarea, [tabindex]';

function focusPlace(el) {
  const active = document.activeElement;
  if (!active || active === el || !el.contains(active)) return null;
  const keyed = active.closest('[data-key]');
  const row = keyed && keyed !== el && el.contains(keyed) ? keyed : null;
  return {
    key: row ? row.dataset.key : null,
    at: row ? [...el.querySelectorAll('[data-key]')].indexOf(row) : -1,
    index: [...(row || el).querySelectorAll(FOCUSABLE)].indexOf(active),
  };
}

function refocus(el, place) {
  if (!place || el.contains(document.activeElement)) return;
  let row = el;
  if (place.key !== null) {
    const rows = [...el.querySelectorAll('[data-key]')];
    row = rows.find((r) => r.dataset.key === place.key);
    if (!row) {
      const near = rows[Math.min(place.at, rows.length - 1)];
      (near?.querySelector(FOCUSABLE) || el.querySelector(FOCUSABLE))?.focus({ preventScroll: true });
      return;
    }
  }
  (place.index < 0 ? row : row.querySelectorAll(FOCUSABLE)[place.index])?.focus({ preventScroll: true });
}

// ---- paths of the dashboard itself -----------------------------------------------------------

// A browser resolves a path segment "." or ".." (even written %2E) away, so an id that is only
// dots has no page of its own: no link is made to it (null).
const dots = (s) => s === '.' || s === '..';
export const uiWorkspace = (ws) => (dots(ws) ? null : `/ui/workspaces/${encodeURIComponent(ws)}`);
export const uiAccount = (ws, acc) => (dots(ws) || dots(acc) ? null : `${uiWorkspace(ws)}/accounts/${encodeURIComponent(acc)}`);

// ---- ids -------------------------------------------------------------------------------------

// Ids come from senders and may hold right-to-left marks or overrides (U+202E): each one put in a
// sentence is isolated (<bdi>, or these marks where only text goes), so that it cannot reorder
// the words around it.
export const isolated = (text) => `\u2068${text}\u2069`;

/** What the service said (a problem's detail, which may quote ids): each word isolated. */
export const said = (text) => h('bdi', {}, text.split(/(\s+)/).map((w, i) => (i % 2 ? w : h('bdi', {}, w))));

// What would show as nothing, or as another character: controls, format characters (zero width,
// bidi), separators other than the space; in an id that is not in NFC, combining marks too.
const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]|(?! )\p{Zs}/gu;
const MARK = /\p{M}/gu;
const codePoint = (c) => `⟨U+${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}⟩`;

/**
 * An id as it can be told apart from every other: each hidden character as ⟨U+200B⟩, a space at
 * either end as ␣ (two ids that differ only there would look the same, and one of spaces alone
 * would show as nothing).
 */
export function visible(value) {
  let text = value.replace(HIDDEN, codePoint);
  if (value.normalize('NFC') !== value) text = text.replace(MARK, codePoint);
  return text.replace(/^ +| +$/g, (spaces) => '␣'.repeat(spaces.length));
}

// Intl.Segmenter came late to some browsers (Firefox 125): without it, ids are cut between code
// points rather than fail to draw.
const graphemes = Intl.Segmenter && new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * An id in monospace, truncated in the middle by CSS when there is no room (the head shrinks
 * with an ellipsis, the tail stays), the full id on hover; a link when `href` is given. Copied
 * whole, as itself (copyWholeIds).
 */
export function id(value, href) {
  const text = visible(value);
  // Cut between characters as a reader sees them (an emoji is not cut in two).
  const chars = graphemes ? [...graphemes.segment(text)].map((g) => g.segment) : [...text];
  const tail = chars.length > 14 ? chars.slice(-6).join('') : '';
  // Read out whole, once: the two visible halves are hidden from screen readers.
  const parts = [h('span', { class: 'sr-only' }, text),
    h('span', { class: 'id-head', 'aria-hidden': 'true' }, tail ? chars.slice(0, -6).join('') : text),
    tail && h('span', { class: 'id-tail', 'aria-hidden': 'true' }, tail)];
  const attrs = { class: 'id', title: text, 'data-id': value };
  return href ? h('a', { ...attrs, href }, parts) : h('span', attrs, parts);
}

/** A selection within one id copies that id whole and as it is, not the three parts it is drawn
 * with (its head, its tail and the copy read out by screen readers) nor its code points shown. */
export function copyWholeIds() {
  document.addEventListener('copy', (e) => {
    const sel = document.getSelection();
    if (!sel || sel.isCollapsed || !sel.rangeCount) return;
    const node = sel.getRangeAt(0).commonAncestorContainer;
    const el = (node.nodeType === Node.ELEMENT_NODE ? node : node.parentElement)?.closest('.id[data-id]');
    if (!el) return;
    e.clipboardData.setData('text/plain', el.dataset.id);
    e.preventDefault();
  });
}

/**
 * Says `text` to screen readers, politely (the page's live region, #announce): a change of a
 * button's own label is not read out. Said again when it is the same as the last time.
 */
export function announce(text) {
  const region = document.getElementById('announce');
  if (!region) return;
  region.textContent = '';
  setTimeout(() => (region.textContent = text), 50);
}

/** A button that copies `text`, saying so for a moment (and to screen readers). */
export function copyButton(text, label = 'Copy') {
  const b = h('button', { type: 'button', class: 'copy', title: `Copy ${label === 'Copy' ? 'the id' : ''}`.trim() }, label);
  b.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(text);
      b.textContent = 'Copied';
      announce('Copied');
    } catch {
      b.textContent = 'Select and copy';
      announce('Could not copy: select the text and copy it');
    }
    setTimeout(() => (b.textContent = label), 1500);
  });
  return b;
}

// ---- states ----------------------------------------------------------------------------------

const TONE = { error: 'bad', paused: 'warn', complete: 'ok', active: 'ok', deleted: 'gone', unknown: 'none' };

/** The colour family of a state: ok, warn, bad, gone or none. */
export const toneOf = (state) => TONE[state] || 'none';

/** A state in colour and in words. */
export function badge(state) {
  const s = state || 'unknown';
  return h('span', { class: `badge tone-${TONE[s] || 'none'}` }, s);
}

// ---- times -----------------------------------------------------------------------------------

/** An API time as a string that sorts as the time does: the API writes milliseconds, or
 * microseconds when there are any (`…41.658Z`, `…41.658500Z`), so its strings do not; with the
 * fraction padded (to 9 digits: 6 and more) they do. Null or undefined sorts first. */
export function timeKey(ts) {
  if (ts === null || ts === undefined) return '';
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/.exec(ts);
  return m ? `${m[1]}.${(m[2] || '').padEnd(9, '0')}Z` : String(ts);
}

/** Two API times in order: < 0 when `a` is earlier, > 0 when later, 0 when the same. */
export function compareTimes(a, b) {
  const x = timeKey(a);
  const y = timeKey(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Two ids in the API's order: as their bytes (UTF-8), that is by code point (a string's `<`
 * compares UTF-16 units, which differs past U+FFFF). */
export function compareIds(a, b) {
  if (a === b) return 0;
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i].codePointAt(0) - y[i].codePointAt(0);
  }
  return x.length - y.length;
}

/** Events newest first by (`occurredAt`, `hookId`), as the API lists them (SPEC §5). */
export const newestFirst = (a, b) => compareTimes(b.occurredAt, a.occurredAt) || compareIds(b.hookId, a.hookId);

/** `2024-02-09 11:33:41.658 UTC`. */
export function utc(ts) {
  const d = new Date(ts);
  return Number.isNaN(d.getTime()) ? String(ts) : d.toISOString().replace('T', ' ').replace('Z', ' UTC');
}

/** A duration in its two largest units: `3 h 12 min`, `45 s`, `4 d 2 h`, `2 y 31 d`. A number and
 * its unit are joined by a no-break space: where a time must wrap (a narrow column, a large
 * font), it wraps between `3 h` and `12 min`, never between `3` and `h`. */
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const units = [
    ['y', 365 * 86400],
    ['d', 86400],
    ['h', 3600],
    ['min', 60],
    ['s', 1],
  ];
  const i = units.findIndex(([, n]) => s >= n);
  if (i < 0) return '<1\u00a0s';
  const [u1, n1] = units[i];
  const first = `${Math.floor(s / n1)}\u00a0${u1}`;
  if (i === units.length - 1) return first;
  const [u2, n2] = units[i + 1];
  const rest = Math.floor((s % n1) / n2);
  return rest ? `${first} ${rest}\u00a0${u2}` : first;
}

// A time ahead of this browser's clock (a sender's clock runs fast) has no duration yet: it is
// named instead, `15:04 UTC` (with its date when more than 20 h ahead).
function ahead(ts, ms) {
  const exact = utc(ts);
  return `${-ms < 20 * 3600e3 ? exact.slice(11, 16) : exact.slice(0, 16)} UTC (ahead of this clock)`;
}

const isAhead = (ts) => new Date(ts).getTime() - Date.now() > 1000;

function relText(ts, mode) {
  const ms = Date.now() - new Date(ts).getTime();
  if (ms < -1000) return mode === 'ago' ? ahead(ts, ms) : `since ${ahead(ts, ms)}`;
  if (mode === 'ago' && ms < 1000) return 'just now';
  if (mode === 'ago') return `${duration(ms)} ago`;
  return mode === 'since' ? `for ${duration(ms)}` : duration(ms);
}

// Times are shown relative to now ("3 min ago"), the exact UTC time in their title for a mouse.
// A finger or the keyboard has no hover: the header's "Exact times" button (app.js) shows every
// time on the page exact instead, and again relative (SPEC §12). The choice is a display
// preference kept in localStorage, so that it holds across pages and reloads (the token is kept
// in sessionStorage only: api.js); where storage is refused, it holds for the page.
const EXACT_KEY = 'calry-hooks.exact-times';
let exact = (() => {
  try {
    return localStorage.getItem(EXACT_KEY) === '1';
  } catch {
    return false;
  }
})();
const exactWatchers = [];

/** Whether times are shown exact (the header's "Exact times" pressed). */
export const exactTimes = () => exact;

/** Shows every time on the page exact (true) or relative (false), and keeps that choice. */
export function setExactTimes(on, keep = true) {
  exact = on;
  if (keep) {
    try {
      if (on) localStorage.setItem(EXACT_KEY, '1');
      else localStorage.removeItem(EXACT_KEY);
    } catch {
      // No storage (a browser's setting): the choice holds for this page.
    }
  }
  for (const t of document.querySelectorAll('time[data-rel]')) showTime(t);
  for (const f of exactWatchers) f(on);
}

/** Calls `f(on)` when times switch between exact and relative (here or in another tab). */
export const onExactTimes = (f) => exactWatchers.push(f);

// Another tab of the dashboard switched: this one follows.
addEventListener('storage', (e) => {
  if (e.key === EXACT_KEY) setExactTimes(e.newValue === '1', false);
});

// `2024-02-09 11:33:41.658 UTC`, or `since …` for a time a state holds since. The date and the
// time of day with its zone are each a box of their own (style.css), so that where the time
// wraps, it wraps between them, and inside the time of day only where even it has no room: not
// `2026-10-` over `28`, nor `…658 UT` over `C`.
function showExact(t, ts, mode) {
  const text = utc(ts);
  const parts = text.match(/^(\S+) (\S+ UTC)$/);
  const since = mode === 'ago' ? '' : 'since ';
  if (t.textContent === since + text) return;
  if (!parts) t.textContent = since + text;
  else t.replaceChildren(since, h('span', {}, parts[1]), ' ', h('span', { class: 'tod' }, parts[2]));
}

function showTime(t) {
  const ts = t.getAttribute('datetime');
  if (exact) showExact(t, ts, t.dataset.rel);
  else t.textContent = relText(ts, t.dataset.rel);
  t.classList.toggle('ahead', !exact && isAhead(ts));
  t.classList.toggle('exact', exact);
}

/**
 * A time shown relative to now (mode 'ago': `3 h 12 min ago`; 'for': `3 h 12 min`; 'since':
 * `for 3 h 12 min`), the exact UTC time in its title and `datetime`; kept current by `tick`. Shown
 * exact instead while the header's "Exact times" is pressed (`2024-02-09 11:33:41.658 UTC`,
 * `since …` but in mode 'ago').
 */
export function rel(ts, mode = 'ago') {
  if (!ts) return h('span', { class: 'muted' }, '—');
  const t = h('time', { datetime: ts, title: utc(ts), 'data-rel': mode });
  showTime(t);
  return t;
}

/** Brings every relative time on the page up to date (exact ones need nothing). */
export function tick() {
  if (exact) return;
  for (const t of document.querySelectorAll('time[data-rel]')) showTime(t);
}

// ---- blocks ----------------------------------------------------------------------------------

/** A message where data would be: kind 'empty', 'loading' or 'error'. */
export function note(kind, ...text) {
  return h('p', { class: `note note-${kind}`, role: kind === 'error' ? 'alert' : null }, ...text);
}

/** A message for an API error: what the service said, in words. */
export function problemNote(err, what) {
  if (err && err.status === 401) {
    // Every part of the page that needed a token says so, but only one is an alert: a screen
    // reader reads out once that no token was given, not once per part. Which one is decided once
    // the parts drawn together are on the page (one that took the place of the alert takes its role).
    const n = note('error', `${what}: the service needs a token (401) and none was given. `,
      h('button', { type: 'button', onclick: () => location.reload() }, 'Enter a token'));
    n.dataset.cause = 'token';
    n.removeAttribute('role');
    queueMicrotask(() => {
      if (n.isConnected && !document.querySelector('[role=alert][data-cause=token]')) n.setAttribute('role', 'alert');
    });
    return n;
  }
  if (err && err.status === 403 && /not a loopback name/.test(err.problem?.detail || '')) {
    // No token exists, and this page was opened under another name (see not_loopback in the API).
    return note('error', `${what}: while no token exists, the service answers only requests sent to a loopback `
      + `name (localhost, 127.0.0.1 or [::1]), and this page was opened as ${location.hostname} (403). Open it `
      + 'under one of those names, or create a token (', h('code', {}, 'calry-hooks token create'),
    ') to use the dashboard under other names.');
  }
  if (err && err.status === 403) {
    return note('error', `${what}: the token in use does not cover this workspace (403`,
      err.problem.detail ? [': ', said(err.problem.detail)] : '', ').');
  }
  if (err && err.status) {
    return note('error', `${what}: the service answered ${err.status}`, err.problem?.detail ? [': ', said(err.problem.detail)] : '', '.');
  }
  return note('error', `${what}: ${err && err.message ? err.message : 'something went wrong'}.`);
}

/**
 * A table that becomes stacked cards on narrow screens: each cell carries its column's label.
 * `columns`: [{label, cls, cell(row) → node}]; `key(row)` names each row (data-key).
 */
export function table(columns, rows, { caption, key, rowClass, compact, sortable } = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: `grid${compact ? ' compact' : ''}${sortable ? ' sortable' : ''}` },
      caption && h('caption', { class: 'sr-only' }, caption),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.cls }, c.head || c.label)))),
      h('tbody', {}, rows.map((r) => tableRow(columns, r, key, rowClass)))));
}

export function tableRow(columns, row, key, rowClass) {
  return h('tr', { 'data-key': key ? key(row) : null, class: rowClass ? rowClass(row) : null },
    columns.map((c) => h('td', { class: c.cls, 'data-label': c.label }, c.cell(row))));
}

/** A section with a heading and an optional line of actions. */
export function section(title, { id: sid, actions, wide } = {}, ...body) {
  return h('section', { class: `panel${wide ? ' wide' : ''}`, 'aria-labelledby': sid },
    h('div', { class: 'panel-head' }, h('h2', { id: sid }, title), actions),
    ...body);
}

/** The word for `n` of a thing: `plural(1, 'account')` is `account`, else `accounts`. */
export const plural = (n, one, many = `${one}s`) => (n === 1 ? one : many);

// ---- what a page keeps across Back, Forward and a reload --------------------------------------

/** The view a page kept in its history entry (rows shown, a sort) over `defaults`: Back, Forward
 * and a reload draw the page as it was left. The URL holds only what is worth sharing (filters). */
export const kept = (defaults) => ({ ...defaults, ...history.state?.view });

/** Keeps `view` in this page's history entry, for `kept`. */
export const keep = (view) => history.replaceState({ ...history.state, view }, '');

/** A count as people read it: `3,001`. */
export const num = (n) => n.toLocaleString('en');

/** One figure of a row of figures: a number (or its text) and what it counts (`title`: a word on it). */
export function figure(label, value, tone, title) {
  return h('div', { class: `figure${tone ? ` tone-${tone}` : ''}`, title },
    h('span', { class: 'figure-value' }, typeof value === 'number' ? num(value) : value),
    h('span', { class: 'figure-label' }, label));
}

/** Formatted JSON in a block, with a button to copy it. */
export function json(value) {
  const text = JSON.stringify(value, null, 2);
  return h('div', { class: 'json' }, copyButton(text, 'Copy JSON'), h('pre', { tabindex: 0 }, text));
}

// ---- accounts and events ---------------------------------------------------------------------

const EVENT_STATE = {
  'account.created': 'active', 'account.updated': 'active', 'account.deleted': 'deleted',
  'link.created': 'active', 'link.updated': 'active', 'link.deleted': 'deleted',
  'sync.complete': 'complete', 'sync.error': 'error', 'sync.paused': 'paused',
};

/** Whether an event type is one that can change a status (SPEC §4). */
export const knownType = (type) => Object.hasOwn(EVENT_STATE, type);
export const KNOWN_TYPES = Object.keys(EVENT_STATE);

// Event types and results come from the sender and may be long (255 characters): the CSS cuts
// them short with an ellipsis (after 21 and 10 characters in a dense table), the whole text in
// their title for a mouse. Such a one is a button too: a tap, a click or Enter opens it to its
// whole text in its place, wrapped, and closes it again.
const LONG = 20;

// The texts opened, kept for the page: a live update or a refresh that draws a row again draws
// them opened still.
const opened = new Set();

function opens(el, text) {
  const b = h('button', { type: 'button', class: 'opens', 'aria-expanded': String(opened.has(text)) }, el);
  b.addEventListener('click', () => {
    if (opened.has(text)) opened.delete(text);
    else opened.add(text);
    for (const same of document.querySelectorAll('button.opens')) {
      if (same.firstElementChild?.title === text) same.setAttribute('aria-expanded', String(opened.has(text)));
    }
  });
  return b;
}

/** An event type, tinted like the state it leads to. Where it may wrap (a narrow screen), it
 * wraps after a dot first (`account.` / `created`), mid-word only when a part is too long. */
export function eventType(type) {
  const parts = type.split(/(?<=\.)/).flatMap((part, i) => (i ? [h('wbr'), part] : [part]));
  // Read out whole: a screen reader reads `sync.<wbr>complete` as two words.
  const el = h('span', { class: `etype tone-${TONE[EVENT_STATE[type]] || 'none'}`, title: type.length > LONG ? type : null },
    h('span', { class: 'sr-only' }, type), h('span', { 'aria-hidden': 'true' }, parts));
  return type.length > LONG ? opens(el, type) : el;
}

/** An event's `result`, or `none` (in muted text) when it has none. */
export function result(text, none = '—') {
  const long = text && text.length > LONG / 2;
  const el = h('span', { class: 'result', title: long ? text : null }, text || none);
  return long ? opens(el, text) : el;
}

/** One category of an account entry: its state, and since when it holds. */
export function stateCell(cat) {
  return h('div', { class: 'state' }, badge(cat.state), sinceLine(cat));
}

function sinceLine(cat) {
  if (!cat || cat.state === 'unknown') return null;
  if (cat.since !== undefined) return cat.since ? h('span', { class: 'since' }, rel(cat.since, 'since')) : null;
  const at = cat.lastEvent?.occurredAt;
  return at ? h('span', { class: 'since fallback' }, 'latest ', rel(at)) : null;
}

/** True when the service does not send `since` (SPEC §11) in this entry. */
export const lacksSince = (entry) => ['account', 'link', 'sync'].some((c) => entry[c] && entry[c].since === undefined);

export const SINCE_MISSING = 'This service does not report since when each state holds (SPEC §11) yet: '
  + 'under each state is the time of its latest event instead.';

// ---- removed history ----

/**
 * What retention or `prune` removed (SPEC §13) of the events a page draws, told from the page's
 * own reads of the newest events (no answer of history says it). History changes in no other
 * way, and a removal takes all history received before its cut: so an event that a read answered
 * before another read was sent, and that this one's answer does not hold though it answers the
 * event's place (newer than its oldest, or its last page), was removed, with every event received
 * no later than it. An event only the stream brought tells nothing by its absence (a read sent
 * before it was stored, or a replica behind, would not hold it yet).
 *
 * A read answered by a replica behind the primary (README "Read replicas") after one the primary
 * answered (a fallback) shows the same absence, of events still stored: so what a read shows
 * removed is taken off only once `confirm(hookId)` resolves true for the latest received of
 * those events (the primary no longer holds it), and `confirmed()` is then called. It resolves
 * false when the primary still holds it: that event is not asked about again while later reads
 * show no more than they did then (a replica as far behind), until a read holds it or HELD_MS
 * pass: events a replica never held and `prune` then removed show no more missing, and would stay.
 */
const HELD_MS = 5 * 60 * 1000;
export function removals(confirm, confirmed) {
  const seen = new Map(); // hook id → the answer that first held it
  let answers = 0;
  let gone = null; // every event received at or before it is removed, as the primary said
  const asking = new Set(); // the hook ids `confirm` is asked about
  // hook id → the ids a read showed removed when the primary said it still holds that event
  // (`ids`), and when it said so (`at`)
  const held = new Map();
  const took = (page) => {
    answers++;
    for (const e of page.items) {
      if (!seen.has(e.hookId)) seen.set(e.hookId, answers);
      held.delete(e.hookId);
    }
  };
  const drop = (drawn) => {
    if (!gone) return { items: drawn, removed: 0 };
    const items = drawn.filter((e) => compareTimes(e.receivedAt, gone) > 0);
    for (const e of drawn) if (compareTimes(e.receivedAt, gone) <= 0) seen.delete(e.hookId);
    return { items, removed: drawn.length - items.length };
  };
  const ask = (e, missing) => {
    if ((gone && compareTimes(e.receivedAt, gone) <= 0) || asking.has(e.hookId)) return;
    const then = held.get(e.hookId);
    if (then && Date.now() - then.at < HELD_MS && missing.every((id) => then.ids.has(id))) return;
    asking.add(e.hookId);
    Promise.resolve(confirm(e.hookId)).then((removed) => {
      asking.delete(e.hookId);
      if (!removed) {
        held.set(e.hookId, { ids: new Set(missing), at: Date.now() });
        return;
      }
      held.clear();
      if (!gone || compareTimes(e.receivedAt, gone) > 0) gone = e.receivedAt;
      confirmed();
    }, () => asking.delete(e.hookId));
  };
  return {
    /** What a read sent now can tell: pass it with its answer. */
    sent: () => answers,
    /** Takes the answer of a read of older events (a page after a cursor). */
    took,
    /** `drawn` without the events the primary said were removed, and how many those were. */
    drop,
    /**
     * Takes `page`, the answer of a read of the newest events sent at `sentAt`, and returns
     * `drop(drawn)`; the events it shows removed are asked about (see above).
     */
    newest(drawn, page, sentAt) {
      const have = new Set(page.items.map((e) => e.hookId));
      const oldest = page.items.at(-1);
      const inSpan = (e) => !page.nextCursor || (oldest && newestFirst(e, oldest) < 0);
      // A removal keeps only what was received after its cut: an event missing though the answer
      // holds one received no later (a replica behind the primary a read fell back to) was not.
      let firstKept = null;
      for (const e of page.items) if (!firstKept || compareTimes(e.receivedAt, firstKept) < 0) firstKept = e.receivedAt;
      const afterAKept = (e) => firstKept && compareTimes(e.receivedAt, firstKept) >= 0;
      let cut = null;
      const missing = [];
      for (const e of drawn) {
        if (have.has(e.hookId) || !(seen.get(e.hookId) <= sentAt) || !inSpan(e) || afterAKept(e)) continue;
        missing.push(e.hookId);
        if (!cut || compareTimes(e.receivedAt, cut.receivedAt) > 0) cut = e;
      }
      took(page);
      if (cut) ask(cut, missing);
      return drop(drawn);
    },
  };
}

/** The note over a list from which `n` events drawn were taken off, removed from the store since. */
export function removedNote(n) {
  return h('p', { class: 'note', role: 'status' },
    `${num(n)} ${plural(n, 'event')} shown here ${n === 1 ? 'was' : 'were'} removed from the store since `
    + '(retention, or calry-hooks prune): no longer listed.');
}
