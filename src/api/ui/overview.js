// The overview (/ui): the figures, the accounts failing right now across every workspace
// (GET /accounts?syncState=error, newest failures first) and the workspaces with their numbers of
// failing and paused accounts (GET /workspaces, by id, then each one's status totals: the first
// account of its failing ones is enough to carry them). Read again every
// 15 s, and soon after the stream of every workspace in view (SPEC §10) says an account's state
// changed; that stream is also what the header's live dot shows.

import { api, p, q } from './api.js';
import { follow } from './stream.js';
import {
  KNOWN_TYPES, badge, compareTimes, figure, fill, h, id, keep, kept, note, num, plural, problemNote, rel, result, said, section, table, uiAccount, uiWorkspace,
} from './view.js';

const REFRESH_MS = 15000;
const CHANGE_DELAY_MS = 2000; // a burst of changes is read once
// A read after a change waits too until the last read's requests, at this many ms each, have
// passed: with hundreds of workspaces a read is over a hundred requests, and a change every 2 s
// (any account of any workspace) would otherwise have the page read without pause.
const MS_PER_REQUEST = 100;
const WORKSPACES_PAGE = 100;
const FAILING_PAGE = 50;
const AT_ONCE = 6; // status requests in flight at a time
// With more workspaces than are listed, the failing and paused accounts are counted across all of
// them from GET /accounts instead, exactly up to this many (4 calls of 500), "+" past it.
const COUNT_UP_TO = 2000;

// The requests the page made, to pace the reads after changes by what they cost.
let asked = 0;
const ask = (path) => {
  asked++;
  return api(path);
};

/** Up to `pages` pages of a listing, as one: {items, nextCursor}. */
async function walk(path, params, pages) {
  const items = [];
  let cursor = null;
  for (let i = 0; i < pages; i++) {
    const page = await ask(q(path, { ...params, cursor }));
    items.push(...page.items);
    cursor = page.nextCursor;
    if (!cursor) break;
  }
  return { items, nextCursor: cursor };
}

/** `fn` over `items`, `n` at a time; each result as {ok} or {err}. */
async function pool(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const k = next++;
      try {
        out[k] = { ok: await fn(items[k]) };
      } catch (err) {
        out[k] = { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

const SORTS = {
  workspace: (a, b) => (a.workspaceId < b.workspaceId ? -1 : a.workspaceId > b.workspaceId ? 1 : 0),
  accounts: (a, b) => a.accounts - b.accounts,
  failing: (a, b) => (a.error ?? -1) - (b.error ?? -1),
  paused: (a, b) => (a.paused ?? -1) - (b.paused ?? -1),
  last: (a, b) => compareTimes(a.lastEventAt, b.lastEventAt),
};

export default function overview(main, { conn }) {
  document.title = 'Overview · calry-hooks';
  const figures = h('div', { class: 'figures four' });
  const failing = h('div', { class: 'panel-body' }, note('loading', 'Loading the accounts failing now…'));
  const workspaces = h('div', { class: 'panel-body' }, note('loading', 'Loading the workspaces…'));
  fill(main,
    h('h1', {}, 'Overview'),
    figures,
    section('Failing now', { id: 'failing-title' }, h('p', { class: 'sub' }, 'Accounts whose latest sync is an error, newest failures first, across every workspace this page may read.'), failing),
    section('Workspaces', { id: 'workspaces-title' }, workspaces));

  const view = kept({ wsPages: 1, failPages: 1, sort: { key: 'failing', desc: true } });
  let shown = { failing: '', workspaces: '', figures: '' };
  let data = null;

  // Redraws a part only when what it shows changed, so a refresh does not move the focus.
  const put = (el, key, signature, draw) => {
    if (shown[key] === signature) return;
    shown[key] = signature;
    fill(el, draw());
  };

  // load() is called by the 15 s loop, by the stream's messages and by "Show more". The loop and
  // the messages start no read while one is under way (the loop waits for it; a message has one
  // more read made after it): while the service cannot be reached each read waits for it, retrying
  // every 5 s, and two of them did so side by side, then both read everything again. "Show more"
  // reads at once: only the answer of the newest read is drawn (an older one, answered last,
  // would draw fewer pages over more, or older data over newer).
  let reads = 0;
  let lastRead = { at: 0, asked: 0 };
  let reading = null; // the newest read, while it is under way
  let changedMeanwhile = false; // a message came while it was: read once more after it
  function load() {
    const mine = ++reads;
    const askedBefore = asked;
    const r = read(mine);
    reading = r;
    const end = () => {
      lastRead = { at: Date.now(), asked: asked - askedBefore };
      if (reading !== r) return;
      reading = null;
      if (changedMeanwhile) {
        changedMeanwhile = false;
        later();
      }
    };
    r.then(end, end);
    return r;
  }
  async function read(mine) {
    const [ws, fail] = await Promise.allSettled([
      walk('/workspaces', { limit: WORKSPACES_PAGE }, view.wsPages),
      walk('/accounts', { syncState: 'error', limit: FAILING_PAGE }, view.failPages),
    ]);
    let rows = [];
    if (ws.status === 'fulfilled') {
      const totals = await pool(ws.value.items, AT_ONCE, (w) => ask(q(p('workspaces', w.workspaceId, 'status'), { syncState: 'error', limit: 1 })));
      rows = ws.value.items.map((w, i) => ({
        ...w,
        error: totals[i].ok?.totals.sync.error,
        paused: totals[i].ok?.totals.sync.paused,
        problem: totals[i].err,
      }));
    }
    // The listed workspaces' totals do not count the others': the workspaces (with their numbers
    // of accounts) and the failing and paused accounts are counted across all instead.
    let counted = null;
    if (ws.status === 'fulfilled' && ws.value.nextCursor) {
      const count = (syncState) => walk('/accounts', { syncState, limit: 500 }, COUNT_UP_TO / 500)
        .then((r) => ({ n: r.items.length, more: !!r.nextCursor }));
      const everyWorkspace = walk('/workspaces', { limit: 500 }, COUNT_UP_TO / 500).then((r) => ({
        n: r.items.length, accounts: r.items.reduce((n, w) => n + w.accounts, 0), more: !!r.nextCursor,
      }));
      const [error, paused, workspaces] = await Promise.allSettled([count('error'), count('paused'), everyWorkspace]);
      counted = { error: error.value, paused: paused.value, workspaces: workspaces.value };
    }
    if (mine !== reads) return true; // a newer read is under way: it draws
    data = { ws, fail, rows, counted };
    draw();
    return !(ws.status === 'rejected' && ws.reason.status === 401); // no token given: stop asking
  }

  function draw() {
    const { ws, fail, rows, counted } = data;
    const more = ws.status === 'fulfilled' && ws.value.nextCursor;
    const lastEventAt = rows.reduce((m, r) => (!m || compareTimes(r.lastEventAt, m) > 0 ? r.lastEventAt : m), null);

    put(figures, 'figures', JSON.stringify([rows, more, counted]), () => {
      if (ws.status === 'rejected') return [];
      const sum = (k) => rows.reduce((n, r) => n + (r[k] ?? 0), 0);
      // Each sum counts only the workspaces listed ("Show more" lists more), and failing and
      // paused none of a workspace whose totals could not be read (n/a below): such a sum is a
      // lower bound, shown with a "+" and said so in its title.
      const unread = rows.some((r) => r.problem);
      const notAll = more ? `At least: counted over the ${rows.length} workspaces listed, not all.` : null;
      const partial = unread ? `At least: ${more ? `counted over the ${rows.length} workspaces listed, not all, and ` : ''}`
        + 'some workspaces’ totals could not be read.' : notAll;
      const atLeast = (n, why) => (why ? `${num(n)}+` : n);
      // A state's number: counted across every workspace when the listed ones are not all of
      // them (exact up to COUNT_UP_TO), else the listed workspaces' totals.
      const inState = (state, label, tone) => {
        const c = counted?.[state];
        if (c) {
          const why = c.more ? `At least: counted up to ${COUNT_UP_TO} across every workspace.` : null;
          return figure(label, atLeast(c.n, why), c.n ? tone : null, why ?? 'Counted across every workspace.');
        }
        const n = sum(state);
        return figure(label, atLeast(n, partial), n ? tone : null, partial);
      };
      // The workspaces and their accounts: counted across every workspace, as above, when the
      // listed ones are not all of them.
      const all = counted?.workspaces;
      const allWhy = all?.more ? `At least: counted over the first ${COUNT_UP_TO} workspaces.` : null;
      return [
        all
          ? figure(plural(all.n, 'workspace'), atLeast(all.n, allWhy), null, allWhy ?? `The first ${rows.length} are listed below.`)
          : figure(more ? 'workspaces (more not shown)' : plural(rows.length, 'workspace'), atLeast(rows.length, notAll)),
        all
          ? figure(plural(all.accounts, 'account'), atLeast(all.accounts, allWhy), null, allWhy ?? 'Counted across every workspace.')
          : figure(plural(sum('accounts'), 'account'), atLeast(sum('accounts'), notAll), null, notAll),
        inState('error', 'failing now', 'bad'),
        inState('paused', 'paused', 'warn'),
      ];
    });

    put(failing, 'failing', JSON.stringify([fail.status, fail.value, fail.reason?.message, lastEventAt]), () => {
      if (fail.status === 'rejected') {
        const err = fail.reason;
        if (err.status === 404) {
          return note('empty', 'This service cannot list failing accounts across workspaces yet: GET /accounts answered 404',
            err.problem?.detail ? [' (', said(err.problem.detail), ')'] : '', '. Each workspace below shows its number of failing accounts.');
        }
        return problemNote(err, 'The failing accounts cannot be shown');
      }
      const { items, nextCursor } = fail.value;
      if (!items.length) {
        return note('empty', 'No account is failing.', lastEventAt ? [' Last event ', rel(lastEventAt), '.'] : '');
      }
      return [
        table([
          { label: 'Integration account', cls: 'col-id', cell: (a) => id(a.integrationAccountId, uiAccount(a.workspaceId, a.integrationAccountId)) },
          { label: 'Workspace', cls: 'col-id', cell: (a) => id(a.workspaceId, uiWorkspace(a.workspaceId)) },
          { label: 'Failing for', cell: (a) => since(a.sync) },
          { label: 'Last error', cls: 'col-wide', cell: (a) => lastError(a.sync) },
          { label: 'Account', cls: 'col-state', cell: (a) => badge(a.account.state) },
          { label: 'Link', cls: 'col-state', cell: (a) => badge(a.link.state) },
        ], items, { caption: 'Accounts failing now', key: (a) => `${a.workspaceId}\u0000${a.integrationAccountId}` }),
        nextCursor && h('button', { type: 'button', class: 'more', onclick: () => { view.failPages++; keep(view); load(); } }, 'Show more failing accounts'),
      ];
    });

    put(workspaces, 'workspaces', JSON.stringify([ws.status, rows, more, view.sort, ws.reason?.message]), () => {
      if (ws.status === 'rejected') return problemNote(ws.reason, 'The workspaces cannot be shown');
      if (!rows.length) {
        return note('empty', 'No workspace has sent an event yet. Point Calry\u2019s webhooks at ',
          h('code', {}, 'POST /webhooks/calry'), ', or post sample data with ', h('code', {}, 'scripts/demo.sh'), '.');
      }
      const sorted = [...rows].sort((a, b) => {
        const d = SORTS[view.sort.key](a, b);
        return (view.sort.desc ? -d : d) || SORTS.workspace(a, b);
      });
      const head = (label, key, numeric) => {
        const active = view.sort.key === key;
        return h('button', {
          type: 'button', class: `sort${active ? ' active' : ''}`,
          title: `Sort by ${label.toLowerCase()}`,
          onclick: () => {
            view.sort = { key, desc: active ? !view.sort.desc : numeric };
            keep(view);
            draw();
            workspaces.querySelector('button.sort.active')?.focus();
          },
        }, label, h('span', { class: 'sort-mark', 'aria-hidden': 'true' }, active ? (view.sort.desc ? ' ▼' : ' ▲') : ''));
      };
      const count = (n, tone) => (n === undefined ? h('span', { class: 'muted' }, '—') : h('span', { class: n ? `num tone-${tone}` : 'num muted' }, num(n)));
      const t = table([
        { label: 'Workspace', head: head('Workspace', 'workspace', false), cls: 'col-id', cell: (w) => id(w.workspaceId, uiWorkspace(w.workspaceId)) },
        { label: 'Accounts', head: head('Accounts', 'accounts', true), cls: 'col-num', cell: (w) => h('span', { class: 'num' }, num(w.accounts)) },
        { label: 'Failing', head: head('Failing', 'failing', true), cls: 'col-num', cell: (w) => (w.problem ? h('span', { class: 'muted', title: w.problem.message }, 'n/a') : count(w.error, 'bad')) },
        { label: 'Paused', head: head('Paused', 'paused', true), cls: 'col-num', cell: (w) => (w.problem ? h('span', { class: 'muted' }, 'n/a') : count(w.paused, 'warn')) },
        { label: 'Last event', head: head('Last event', 'last', true), cls: 'col-wide', cell: (w) => rel(w.lastEventAt) },
      ], sorted, { caption: 'Workspaces', sortable: true, key: (w) => w.workspaceId, rowClass: (w) => (w.error ? 'row-bad' : null) });
      for (const th of t.querySelectorAll('th')) {
        const b = th.querySelector('button.active');
        th.setAttribute('aria-sort', b ? (view.sort.desc ? 'descending' : 'ascending') : 'none');
      }
      return [t, more && h('p', { class: 'more-line' },
        h('button', { type: 'button', class: 'more', onclick: () => { view.wsPages++; keep(view); load(); } }, 'Show more workspaces'),
        `The first ${rows.length} workspaces by id are listed, and only they are sorted.`)];
    });
  }

  let soon = null;
  const later = () => {
    const paced = lastRead.at + lastRead.asked * MS_PER_REQUEST - Date.now();
    soon ??= setTimeout(() => {
      soon = null;
      // The read under way may have begun before the change: one more after it.
      if (reading) changedMeanwhile = true;
      else load();
    }, Math.max(CHANGE_DELAY_MS, paced));
  };
  let opened = false;
  follow(q('/stream', { eventType: KNOWN_TYPES.join(',') }), {
    onMessage: (type) => type === 'status' && later(),
    onState: conn,
    // The stream opened again without a position: what changed meanwhile is read (the first
    // opening is covered by the first read).
    onOpen: () => (opened ? later() : (opened = true)),
  });

  const loop = async () => {
    try {
      if (!(await (reading ?? load()))) return; // the read under way, if any, is this one
    } catch (err) {
      shown.workspaces = ''; // what is drawn there is this note now: the next read draws again
      fill(workspaces, problemNote(err, 'The overview cannot be shown'));
      // Not left saying (and marked busy) that it loads, when it never drew.
      if (failing.hasAttribute('aria-busy')) fill(failing, note('empty', 'Not shown while the overview cannot be read.'));
    }
    setTimeout(loop, REFRESH_MS);
  };
  loop();
}

/** When the current sync state began (SPEC §11), or the latest error while `since` is not there. */
function since(sync) {
  if (sync.since !== undefined) return rel(sync.since, 'for');
  return h('span', { class: 'fallback', title: 'This service does not report since when a state holds (SPEC §11): the latest error is shown instead.' },
    'latest ', rel(sync.lastErrorAt));
}

function lastError(sync) {
  const e = sync.lastEvent;
  if (!e) return h('span', { class: 'muted' }, '—');
  return h('span', {}, result(e.result, 'no result'), ' · ', rel(e.occurredAt));
}
