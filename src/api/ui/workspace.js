// A workspace (/ui/workspaces/{id}): its accounts with each category's state and since when it
// holds, filters by state kept in the URL, and its recent events; live from the workspace's
// stream (SPEC §10): a `status` message carries its account's entry, and an event that changed
// no state (a second sync.error, say: no `status` message follows it) has its account's entry
// read again. A workspace may have thousands of accounts: only the first rows that pass the
// filters are drawn ("Show more" draws more), and a live update touches only its account's row
// (none when that account is not drawn), so a keystroke or a live update costs the same whatever
// its size.

import { ApiError, api, p, q, removedFromStore, watch } from './api.js';
import { follow } from './stream.js';
import {
  SINCE_MISSING, compareTimes, copyButton, eventType, figure, fill, h, id, isolated, keep, kept, knownType, lacksSince, newestFirst,
  note, num, plural, problemNote, rel, removals, removedNote, result, said, section, stateCell, swap, table, tableRow, toneOf,
  uiAccount, visible,
} from './view.js';

const RECENT = 25;
const STATES = {
  sync: ['error', 'paused', 'complete', 'unknown'],
  account: ['active', 'deleted', 'unknown'],
  link: ['active', 'deleted', 'unknown'],
};
const FLASH_MS = 2500;
const ROWS = 100; // accounts drawn at first, and added by each "Show more"
const TYPING_MS = 150; // the search applies once typing pauses
const FLUSH_MS = 100; // live messages are drawn together, at most this often

export default function workspacePage(main, { conn }, ws) {
  document.title = `Workspace ${isolated(visible(ws))} · calry-hooks`;
  const url = new URL(location.href);
  const filter = { q: url.searchParams.get('q') || '' };
  for (const cat of Object.keys(STATES)) {
    filter[cat] = new Set((url.searchParams.get(cat) || '').split(',').filter((s) => STATES[cat].includes(s)));
  }

  const accounts = new Map(); // integrationAccountId → entry
  let ids = []; // the accounts' ids, in order
  const view = kept({ limit: ROWS }); // rows drawn
  let events = [];
  let removed = 0; // events drawn that retention or `prune` removed since (see watch below)
  // Once the primary says events drawn were removed, the recent events are read again (and
  // `read` counts those taken off).
  const gone = removals(removedFromStore, () => loaded && load());
  let lastEventAt = null;
  let missing = null; // the 404 of a workspace with no events yet
  let loaded = false;
  const queued = [];

  const figures = h('div', { class: 'figures' });
  const notice = h('div');
  // The toggles and "Clear filters" change as counts do (drawFilters); the search box stays, so
  // that typing in it is never interrupted.
  const toggles = h('div', { class: 'filter-groups' });
  const clear = h('div', { class: 'filter-clear' });
  let typing = null;
  const search = h('input', {
    type: 'search', class: 'search', placeholder: 'Find an account id', 'aria-label': 'Find an account id', value: filter.q,
    oninput: () => {
      clearTimeout(typing);
      typing = setTimeout(() => {
        filter.q = search.value.trim();
        changedFilter();
      }, TYPING_MS);
    },
  });
  const filters = h('div', { class: 'filters', role: 'group', 'aria-label': 'Filter the accounts by state' }, toggles, search, clear);
  // What the person's own filter changes leave shown, read out once they are made (not at each
  // live update, which changes the counts and rows without being asked).
  const filtered = h('p', { class: 'sr-only', role: 'status', id: 'filter-status' });
  const accountsBody = h('div', { class: 'panel-body' }, note('loading', 'Loading the accounts…'));
  const eventsBody = h('div', { class: 'panel-body' }, note('loading', 'Loading the recent events…'));
  const panels = h('div', { class: 'columns' },
    section('Accounts', { id: 'accounts-title', wide: true }, filters, filtered, accountsBody),
    section('Recent events', { id: 'events-title' }, eventsBody));
  fill(main,
    h('div', { class: 'title' }, h('h1', {}, 'Workspace ', id(ws)), copyButton(ws)),
    figures,
    notice,
    panels);

  // ---- drawing ----

  const passes = (a) => Object.keys(STATES).every((cat) => !filter[cat].size || filter[cat].has(a[cat].state))
    && (!filter.q || a.integrationAccountId.toLowerCase().includes(filter.q.toLowerCase()));

  /** Adds `key` to `ids`, in order. */
  /** Where `key` goes among `n` keys in order, `keyAt(i)` the i-th: before the first after it. */
  function placeOf(key, n, keyAt) {
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (keyAt(mid) < key) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function insertId(key) {
    ids.splice(placeOf(key, ids.length, (i) => ids[i]), 0, key);
  }

  const columns = [
    { label: 'Integration account', cls: 'col-id', cell: (a) => id(a.integrationAccountId, uiAccount(ws, a.integrationAccountId)) },
    { label: 'Account', cls: 'col-state', cell: (a) => stateCell(a.account) },
    { label: 'Link', cls: 'col-state', cell: (a) => stateCell(a.link) },
    { label: 'Sync', cls: 'col-state', cell: (a) => stateCell(a.sync) },
    { label: 'Last event', cls: 'col-wide', cell: (a) => rel(a.lastEventAt) },
  ];
  const row = (a) => tableRow(columns, a, (x) => x.integrationAccountId, (x) => (x.sync.state === 'error' ? 'row-bad' : null));

  function drawFigures() {
    const n = { sync: {}, account: {}, link: {} }; // category → state → accounts, in one pass
    for (const a of accounts.values()) for (const cat of Object.keys(n)) n[cat][a[cat].state] = (n[cat][a[cat].state] || 0) + 1;
    const count = (cat, state) => n[cat][state] || 0;
    const failing = count('sync', 'error');
    const paused = count('sync', 'paused');
    fill(figures,
      figure(plural(accounts.size, 'account'), accounts.size),
      figure('failing now', failing, failing ? 'bad' : null),
      figure('paused', paused, paused ? 'warn' : null),
      figure('sync complete', count('sync', 'complete')),
      figure('deleted', count('account', 'deleted')),
      h('div', { class: 'figure' }, h('span', { class: 'figure-value small' }, lastEventAt ? rel(lastEventAt) : '—'), h('span', { class: 'figure-label' }, 'last event')));
    fill(notice, [...accounts.values()].some(lacksSince) ? note('empty', SINCE_MISSING) : null);
    drawFilters(count);
  }

  // The toggles are made once and changed in place as counts change: a button drawn again between
  // a press and its release (a live update, every 100 ms in a storm) would lose the click, and
  // the keyboard's focus with it.
  const toggle = new Map(); // `${cat}:${state}` → { button, n }
  let clearShown = null;
  function drawFilters(count) {
    if (!toggle.size) {
      fill(toggles, Object.entries(STATES).map(([cat, states]) => h('div', { class: 'filter-group', role: 'group', 'aria-label': `${cat} state` },
        h('span', { class: 'filter-label', 'aria-hidden': 'true' }, cat),
        states.map((s) => {
          const n = h('span', { class: 'count' });
          const button = h('button', {
            type: 'button', class: 'toggle', 'data-filter': `${cat}:${s}`, title: `Only accounts whose ${cat} is ${s}`,
            onclick: () => {
              filter[cat].has(s) ? filter[cat].delete(s) : filter[cat].add(s);
              changedFilter();
            },
          }, h('span', { class: `swatch tone-${toneOf(s)}`, 'aria-hidden': 'true' }), s, ' ', n);
          toggle.set(`${cat}:${s}`, { button, n });
          return button;
        }))));
    }
    for (const [cat, states] of Object.entries(STATES)) {
      for (const s of states) {
        const { button, n } = toggle.get(`${cat}:${s}`);
        const c = count(cat, s);
        button.setAttribute('aria-pressed', String(filter[cat].has(s)));
        button.setAttribute('aria-label', `${s} ${c} ${plural(c, 'account')}`);
        n.textContent = num(c);
      }
    }
    const any = Boolean(filter.q || Object.keys(STATES).some((c) => filter[c].size));
    if (any === clearShown) return;
    clearShown = any;
    fill(clear, any && h('button', {
      type: 'button', class: 'link', 'data-filter': 'clear',
      onclick: () => {
        for (const c of Object.keys(STATES)) filter[c].clear();
        filter.q = '';
        search.value = '';
        changedFilter();
        search.focus();
      },
    }, 'Clear filters'));
  }

  function changedFilter() {
    const u = new URL(location.href);
    for (const c of Object.keys(STATES)) {
      if (filter[c].size) u.searchParams.set(c, [...filter[c]].join(','));
      else u.searchParams.delete(c);
    }
    if (filter.q) u.searchParams.set('q', filter.q);
    else u.searchParams.delete('q');
    history.replaceState(history.state, '', u);
    view.limit = ROWS;
    keep(view);
    drawFigures();
    drawAccounts();
    if (loaded) tellFiltered();
  }

  function tellFiltered() {
    let matching = 0;
    for (const a of accounts.values()) if (passes(a)) matching++;
    const all = `${num(accounts.size)} ${plural(accounts.size, 'account')}`;
    filtered.textContent = matching > drawn.size ? `${num(matching)} of ${all} match; the first ${num(drawn.size)} are shown`
      : `${num(matching)} of ${all} shown`;
  }

  // The table drawn (null when a note is there instead): its body, its rows by account id and
  // the line under it ("Show more"). A live update touches only the rows it concerns.
  let tbody = null;
  let drawn = new Map(); // integrationAccountId → its <tr>, for the rows drawn
  const moreLine = h('p', { class: 'more-line' });

  const lastDrawn = () => tbody.lastElementChild?.dataset.key;

  /** The next `n` accounts that pass the filters after `key` (null: from the first), in order. */
  function after(key, n) {
    const out = [];
    let i = key === null ? 0 : ids.indexOf(key) + 1;
    for (; i < ids.length && out.length < n; i++) if (passes(accounts.get(ids[i]))) out.push(accounts.get(ids[i]));
    return out;
  }

  function drawAccounts() {
    tbody = null;
    drawn = new Map();
    if (missing && !accounts.size && !events.length) {
      fill(accountsBody, note('empty', 'No event from this workspace has arrived yet (the service answered 404: ', said(missing), '). '
        + 'This page shows its accounts as soon as one does.'));
      return;
    }
    if (!accounts.size) {
      fill(accountsBody, note('empty', 'No integration account in this workspace yet: none of its events of a known type names one.'));
      return;
    }
    const first = after(null, view.limit);
    if (!first.length) {
      fill(accountsBody, note('empty', `No account matches these filters (${accounts.size} in all).`));
      return;
    }
    const t = table(columns, first, { caption: 'Accounts', key: (a) => a.integrationAccountId, rowClass: (a) => (a.sync.state === 'error' ? 'row-bad' : null) });
    tbody = t.querySelector('tbody');
    for (const tr of tbody.children) drawn.set(tr.dataset.key, tr);
    fill(accountsBody, t, moreLine);
    drawMoreLine();
  }

  /** "Show N more" and how many are drawn: one pass over the accounts, no row drawn. */
  function drawMoreLine() {
    if (!tbody) return;
    let matching = 0;
    for (const a of accounts.values()) if (passes(a)) matching++;
    const rest = matching - drawn.size;
    moreLine.hidden = rest <= 0;
    fill(moreLine, rest > 0 && [
      h('button', { type: 'button', class: 'more', onclick: showMore }, `Show ${Math.min(rest, ROWS)} more`),
      `${num(drawn.size)} of ${num(matching)} ${matching < accounts.size ? 'matching ' : ''}`
      + 'accounts shown; the filters and the search above find any of them.']);
  }

  /** Draws the next rows under the others, and moves the focus to the first of them. */
  function showMore() {
    view.limit += ROWS;
    keep(view);
    const next = after(lastDrawn(), ROWS).map(row);
    for (const tr of next) drawn.set(tr.dataset.key, tr);
    tbody.append(...next);
    drawMoreLine();
    next[0]?.querySelector('a')?.focus();
  }

  function flashRow(tr) {
    tr.classList.add('flash');
    setTimeout(() => tr.classList.remove('flash'), FLASH_MS);
  }

  /** Takes a row off the table; the keyboard focus in it goes to the next row (or the table). */
  function dropRow(tr) {
    drawn.delete(tr.dataset.key);
    const focused = tr.contains(document.activeElement);
    const near = tr.nextElementSibling || tr.previousElementSibling;
    tr.remove();
    if (focused) (near?.querySelector('a') || search).focus({ preventScroll: true });
  }

  /** Brings the row of the account `key` up to date: replaced, added in its place among the rows
   * drawn, or taken off; the rows after the last one drawn are left to "Show more". */
  function placeRow(key) {
    const a = accounts.get(key);
    const tr = drawn.get(key);
    if (tr && passes(a)) {
      const fresh = row(a);
      swap(tr, fresh);
      drawn.set(key, fresh);
      flashRow(fresh);
    } else if (tr) {
      dropRow(tr);
      const [next] = after(lastDrawn() ?? null, 1); // one row up from beyond the drawn ones
      if (next && drawn.size < view.limit) {
        const fresh = row(next);
        tbody.append(fresh);
        drawn.set(next.integrationAccountId, fresh);
      }
    } else if (passes(a) && (drawn.size < view.limit || key < lastDrawn())) {
      // Among the rows drawn (they are in id order): before the first one after it.
      const rows = tbody.children;
      const fresh = row(a);
      tbody.insertBefore(fresh, rows[placeOf(key, rows.length, (i) => rows[i].dataset.key)] || null);
      drawn.set(key, fresh);
      flashRow(fresh);
      if (drawn.size > view.limit) dropRow(tbody.lastElementChild);
    }
  }

  function drawEvents() {
    const told = removed ? removedNote(removed) : null;
    if (!events.length) {
      fill(eventsBody, told, note('empty', missing ? 'No events yet.' : 'No events.'));
      return;
    }
    fill(eventsBody, told, table([
      { label: 'Occurred', cell: (e) => rel(e.occurredAt) },
      { label: 'Type', cell: (e) => eventType(e.eventType) },
      { label: 'Account', cls: 'col-id', cell: (e) => (e.integrationAccountId ? id(e.integrationAccountId, uiAccount(ws, e.integrationAccountId)) : h('span', { class: 'muted' }, '—')) },
      { label: 'Result', cell: (e) => result(e.result) },
    ], events, { caption: 'Recent events', compact: true, key: (e) => e.hookId, rowClass: (e) => (e.fresh ? 'flash' : null) }));
    for (const e of events) delete e.fresh;
  }

  // ---- changes ----

  // Live messages change the data at once and the page at most once every FLUSH_MS: a burst of
  // them costs one pass over the accounts (the counts) and the rows it concerns, not one drawing
  // of the table per message.
  const changed = new Set(); // accounts whose entry changed since the last drawing
  let eventsChanged = false;
  let whole = false; // draw the table anew (a note is there, or the first event arrived)
  let flushing = null;
  function soon() {
    flushing ??= setTimeout(flush, FLUSH_MS);
  }
  function flush() {
    flushing = null;
    if (!loaded) return; // a read is under way: it draws everything
    drawFigures();
    if (eventsChanged) drawEvents();
    eventsChanged = false;
    if (whole || !tbody) drawAccounts();
    else {
      for (const key of changed) placeRow(key);
      if (!drawn.size) drawAccounts(); // the last row drawn was taken off: say why
      else drawMoreLine();
    }
    whole = false;
    changed.clear();
  }

  /** An account's entry, as of now. */
  function put(entry) {
    const key = entry.integrationAccountId;
    if (!accounts.has(key)) insertId(key);
    accounts.set(key, entry);
    changed.add(key);
    soon();
  }

  // Accounts whose entry is read again (see apply: after an event, when the page cannot tell),
  // at most once every 300 ms each, unless the event's `status` message brought the entry: the
  // event of each (hook id) that asked for it. An answer overtaken by a `status` message of its
  // account is not used: the entry is read once more.
  const rereading = new Map();
  const statuses = new Map(); // account → `status` messages so far
  function reread(account, hookId) {
    const asked = rereading.has(account);
    rereading.set(account, hookId);
    if (asked) return;
    setTimeout(async () => {
      if (!rereading.delete(account)) return; // its status message came
      const seen = statuses.get(account);
      try {
        const entry = await api(p('workspaces', ws, 'accounts', account));
        if (statuses.get(account) === seen) put(entry);
        else reread(account, null);
      } catch {
        // A 404 (no event of a known type yet) or an error: the next message tries again.
      }
    }, 300);
  }

  function apply(type, data) {
    if (type === 'status' && data.status) {
      missing = null;
      put(data.status);
      const account = data.status.integrationAccountId;
      statuses.set(account, (statuses.get(account) || 0) + 1);
      if (data.causedBy && rereading.get(account) === data.causedBy) rereading.delete(account);
    } else if (type === 'event') {
      if (missing) {
        missing = null; // the workspace has an event now, if no account yet
        whole = true;
      }
      if (!lastEventAt || compareTimes(data.occurredAt, lastEventAt) > 0) lastEventAt = data.occurredAt;
      if (!events.some((e) => e.hookId === data.hookId)) {
        events = [{ ...data, fresh: true }, ...events]
          .sort(newestFirst)
          .slice(0, RECENT);
        eventsChanged = true;
      }
      const account = data.integrationAccountId;
      if (account && knownType(data.eventType)) {
        // Of what the page shows, the newest event of its category that changes no state changes
        // only the account's lastEventAt, the greatest occurredAt of its events of a known type
        // (SPEC §4): taken from the event itself, not read again (a storm had the page make one
        // request per event). A late event (not the newest of its category) may move `since`
        // with no `status` message (SPEC §10, §11), so its account is read again; so is one the
        // page does not know yet, and an entry without `since` (an older service, whose latest
        // event is shown instead).
        const entry = accounts.get(account);
        const latest = entry?.[data.eventType.split('.')[0]]?.lastEvent?.occurredAt;
        const late = !latest || compareTimes(data.occurredAt, latest) <= 0;
        if (entry && compareTimes(data.occurredAt, entry.lastEventAt) > 0) put({ ...entry, lastEventAt: data.occurredAt });
        if (!entry || late || lacksSince(entry)) reread(account, data.hookId);
      }
      soon();
    }
  }

  // ---- loading ----

  // Read whenever the stream opens without a position (it carries only what is stored after it
  // opened), one read after another; the messages that come meanwhile wait for it. A read sees
  // what the messages before it said: those are dropped. The first read does not wait for the
  // stream: a stream may wait long for a connection (a browser allows 6 per host over HTTP/1.1,
  // and other tabs hold theirs), and the page shows its data meanwhile; the read when it opens is
  // what leaves no gap between the data and the stream.
  let reading = Promise.resolve();
  const load = () => (reading = reading.then(read));
  load();

  follow(p('workspaces', ws, 'stream'), {
    onMessage: (type, data) => (loaded ? apply(type, data) : queued.push([type, data])),
    onState: (kind) => {
      conn(kind);
      if (kind === 'stopped' && !loaded) load(); // the page says why from its own read
    },
    onOpen: load,
  });
  // The recent events are read every 15 s (also the page's check that the service answers): what
  // they show removed from those drawn is asked of the primary, and once it says so, read again
  // (`gone` above; a read already under way, or the next after a failed one, takes them off).
  let watchSent = 0;
  watch(() => {
    watchSent = gone.sent();
    return q(p('workspaces', ws, 'events'), { limit: RECENT });
  }, (page) => {
    if (loaded) gone.newest(events, page, watchSent);
  });

  async function read() {
    loaded = false;
    queued.length = 0;
    const sentAt = gone.sent();
    try {
      const [status, recent] = await Promise.all([
        api(p('workspaces', ws, 'status')).catch((e) => {
          if (e instanceof ApiError && e.status === 404) return { missing: e.problem.detail || 'no such workspace' };
          throw e;
        }),
        api(q(p('workspaces', ws, 'events'), { limit: RECENT })),
      ]);
      missing = status.missing || null;
      accounts.clear();
      ids = [];
      if (!missing) {
        lastEventAt = status.lastEventAt;
        for (const a of status.accounts) accounts.set(a.integrationAccountId, a);
        ids = [...accounts.keys()].sort();
      }
      removed += gone.newest(events, recent, sentAt).removed;
      events = recent.items;
      loaded = true;
      filters.hidden = false;
      changed.clear();
      whole = false;
      eventsChanged = false;
      drawFigures();
      drawAccounts();
      drawEvents();
      for (const [type, data] of queued.splice(0)) apply(type, data);
    } catch (err) {
      // Into the sections' bodies, which stay in the page: the next read (the stream opening
      // again) draws into them.
      tbody = null;
      filters.hidden = true; // nothing to filter
      fill(figures);
      fill(accountsBody, problemNote(err, 'This workspace cannot be shown'));
      fill(eventsBody, note('empty', 'Not shown while the workspace cannot be read.'));
    }
  }
}
