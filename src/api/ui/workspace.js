// A workspace (/ui/workspaces/{id}): its accounts with each category's state and since when it
// holds, filters by state kept in the URL, and its recent events; live from the workspace's
// stream (SPEC §10): a `status` message replaces its account's row at once, and an event that
// changed no state (a second sync.error, say) has its account's entry read again. A workspace may
// have thousands of accounts: only the first rows that pass the filters are drawn ("Show more"
// draws more), so a keystroke or a live update costs the same whatever its size.

import { ApiError, api, p, q, watch } from './api.js';
import { follow } from './stream.js';
import {
  SINCE_MISSING, copyButton, eventType, figure, fill, h, id, isolated, knownType, lacksSince, note, plural,
  problemNote, rel, result, said, section, stateCell, swap, table, tableRow, toneOf, uiAccount,
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

export default function workspacePage(main, { conn }, ws) {
  document.title = `Workspace ${isolated(ws)} · calry-hooks`;
  const url = new URL(location.href);
  const filter = { q: url.searchParams.get('q') || '' };
  for (const cat of Object.keys(STATES)) {
    filter[cat] = new Set((url.searchParams.get(cat) || '').split(',').filter((s) => STATES[cat].includes(s)));
  }

  const accounts = new Map(); // integrationAccountId → entry
  let ids = []; // the accounts' ids, in order
  let limit = ROWS; // rows drawn
  let events = [];
  let lastEventAt = null;
  let missing = null; // the 404 of a workspace with no events yet
  let loaded = false;
  const queued = [];

  const figures = h('div', { class: 'figures' });
  const notice = h('div');
  // The toggles and "Clear filters" are drawn again as counts change; the search box stays, so
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
  const accountsBody = h('div', { class: 'panel-body' }, note('loading', 'Loading the accounts…'));
  const eventsBody = h('div', { class: 'panel-body' }, note('loading', 'Loading the recent events…'));
  const panels = h('div', { class: 'columns' },
    section('Accounts', { id: 'accounts-title', wide: true }, filters, accountsBody),
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
  function insertId(key) {
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ids[mid] < key) lo = mid + 1;
      else hi = mid;
    }
    ids.splice(lo, 0, key);
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

  function drawFilters(count) {
    fill(toggles, Object.entries(STATES).map(([cat, states]) => h('div', { class: 'filter-group', role: 'group', 'aria-label': `${cat} state` },
      h('span', { class: 'filter-label', 'aria-hidden': 'true' }, cat),
      states.map((s) => {
        const n = count(cat, s);
        return h('button', {
          type: 'button', class: 'toggle', 'aria-pressed': String(filter[cat].has(s)), 'data-filter': `${cat}:${s}`,
          title: `Only accounts whose ${cat} is ${s}`, 'aria-label': `${cat} ${s}: ${n} ${plural(n, 'account')}`,
          onclick: () => {
            filter[cat].has(s) ? filter[cat].delete(s) : filter[cat].add(s);
            changedFilter();
          },
        }, h('span', { class: `swatch tone-${toneOf(s)}`, 'aria-hidden': 'true' }), s, h('span', { class: 'count' }, String(n)));
      }))));
    const any = filter.q || Object.keys(STATES).some((c) => filter[c].size);
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
    history.replaceState(null, '', u);
    limit = ROWS;
    drawFigures();
    drawAccounts();
  }

  function drawAccounts(flash) {
    if (missing && !accounts.size && !events.length) {
      fill(accountsBody, note('empty', 'No event from this workspace has arrived yet (the service answered 404: ', said(missing), '). '
        + 'This page shows its accounts as soon as one does.'));
      return;
    }
    if (!accounts.size) {
      fill(accountsBody, note('empty', 'No integration account in this workspace yet: none of its events of a known type names one.'));
      return;
    }
    const shown = [];
    for (const k of ids) if (passes(accounts.get(k))) shown.push(accounts.get(k));
    if (!shown.length) {
      fill(accountsBody, note('empty', `No account matches these filters (${accounts.size} in all).`));
      return;
    }
    const rest = shown.length - limit;
    fill(accountsBody,
      table(columns, shown.slice(0, limit), { caption: 'Accounts', key: (a) => a.integrationAccountId, rowClass: (a) => (a.sync.state === 'error' ? 'row-bad' : null) }),
      rest > 0 && h('p', { class: 'more-line' },
        h('button', { type: 'button', class: 'more', onclick: showMore }, `Show ${Math.min(rest, ROWS)} more`),
        `${limit.toLocaleString('en')} of ${shown.length.toLocaleString('en')} ${shown.length < accounts.size ? 'matching ' : ''}`
        + 'accounts shown; the filters and the search above find any of them.'));
    if (flash) flashRow(flash);
  }

  /** Draws the next rows, and moves the focus to the first of them. */
  function showMore() {
    const first = limit;
    limit += ROWS;
    drawAccounts();
    accountsBody.querySelectorAll('tbody tr')[first]?.querySelector('a')?.focus();
  }

  function flashRow(key) {
    const tr = [...accountsBody.querySelectorAll('tr[data-key]')].find((t) => t.dataset.key === key);
    if (!tr) return;
    tr.classList.add('flash');
    setTimeout(() => tr.classList.remove('flash'), FLASH_MS);
  }

  function drawEvents() {
    if (!events.length) {
      fill(eventsBody, note('empty', missing ? 'No events yet.' : 'No events.'));
      return;
    }
    fill(eventsBody, table([
      { label: 'Occurred', cell: (e) => rel(e.occurredAt) },
      { label: 'Type', cell: (e) => eventType(e.eventType) },
      { label: 'Account', cls: 'col-id', cell: (e) => (e.integrationAccountId ? id(e.integrationAccountId, uiAccount(ws, e.integrationAccountId)) : h('span', { class: 'muted' }, '—')) },
      { label: 'Result', cell: (e) => result(e.result) },
    ], events, { caption: 'Recent events', compact: true, key: (e) => e.hookId, rowClass: (e) => (e.fresh ? 'flash' : null) }));
    for (const e of events) delete e.fresh;
  }

  // ---- changes ----

  /** An account's entry, as of now: replace its row in place, or draw the table anew. */
  function put(entry) {
    const key = entry.integrationAccountId;
    if (!accounts.has(key)) insertId(key);
    accounts.set(key, entry);
    drawFigures();
    const tr = [...accountsBody.querySelectorAll('tr[data-key]')].find((t) => t.dataset.key === key);
    if (tr && passes(entry)) {
      const fresh = row(entry);
      swap(tr, fresh);
      flashRow(key);
    } else {
      drawAccounts(key);
    }
  }

  // Accounts whose entry is read again (after an event that may not have changed their state),
  // at most once a second each.
  const rereading = new Set();
  function reread(account) {
    if (rereading.has(account)) return;
    rereading.add(account);
    setTimeout(async () => {
      rereading.delete(account);
      try {
        put(await api(p('workspaces', ws, 'accounts', account)));
      } catch {
        // A 404 (no event of a known type yet) or an error: the next message tries again.
      }
    }, 300);
  }

  function apply(type, data) {
    if (type === 'status' && data.status) {
      missing = null;
      put(data.status);
    } else if (type === 'event') {
      if (missing) {
        missing = null; // the workspace has an event now, if no account yet
        drawAccounts();
      }
      if (!lastEventAt || data.occurredAt > lastEventAt) lastEventAt = data.occurredAt;
      if (!events.some((e) => e.hookId === data.hookId)) {
        events = [{ ...data, fresh: true }, ...events]
          .sort((a, b) => (a.occurredAt < b.occurredAt ? 1 : a.occurredAt > b.occurredAt ? -1 : 0))
          .slice(0, RECENT);
        drawEvents();
      }
      if (data.integrationAccountId && knownType(data.eventType)) reread(data.integrationAccountId);
      drawFigures();
    }
  }

  // ---- loading ----

  // Read whenever the stream opens without a position (it carries only what is stored after it
  // opened), one read after another; the messages that come meanwhile wait for it. A read sees
  // what the messages before it said: those are dropped.
  let reading = Promise.resolve();
  const load = () => (reading = reading.then(read));

  follow(p('workspaces', ws, 'stream'), {
    onMessage: (type, data) => (loaded ? apply(type, data) : queued.push([type, data])),
    onState: (kind) => {
      conn(kind);
      if (kind === 'stopped' && !loaded) load(); // the page says why from its own read
    },
    onOpen: load,
  });
  watch('/workspaces?limit=1');

  async function read() {
    loaded = false;
    queued.length = 0;
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
      events = recent.items;
      loaded = true;
      drawFigures();
      drawAccounts();
      drawEvents();
      for (const [type, data] of queued.splice(0)) apply(type, data);
    } catch (err) {
      // Into the sections' bodies, which stay in the page: the next read (the stream opening
      // again) draws into them.
      fill(figures);
      fill(accountsBody, problemNote(err, 'This workspace cannot be shown'));
      fill(eventsBody, note('empty', 'Not shown while the workspace cannot be read.'));
    }
  }
}
