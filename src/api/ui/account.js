// An account (/ui/workspaces/{id}/accounts/{account}): its three categories, its timeline of
// state changes (SPEC §11) and its recent events, any event's payload on request; live from the
// workspace's stream filtered to the account.

import { ApiError, api, p, q, removedFromStore, watch } from './api.js';
import { follow } from './stream.js';
import {
  SINCE_MISSING, compareTimes, copyButton, eventType, fill, h, id, isolated, json, keep, kept, lacksSince, newestFirst, note, num,
  problemNote, rel, removals, removedNote, result, said, section, stateCell, table, uiWorkspace, utc, visible,
} from './view.js';

const EVENTS_PAGE = 25;
const TIMELINE_PAGE = 50;
// The most rows of a list read again at once (the API's largest page): the newest changes after a
// live one, and the rows "Show older" had drawn when the page is opened again.
const MOST = 500;
const HOLD_MS = 1000;

export default function accountPage(main, { conn }, ws, acc) {
  document.title = `Account ${isolated(visible(acc))} · calry-hooks`;
  const base = p('workspaces', ws, 'accounts', acc);
  const cards = h('div', { class: 'cards' }, note('loading', 'Loading the account…'));
  const notice = h('div');
  const timelineBody = h('div', { class: 'panel-body' }, note('loading', 'Loading the timeline…'));
  const eventsBody = h('div', { class: 'panel-body' }, note('loading', 'Loading the recent events…'));
  fill(main,
    h('div', { class: 'title' }, h('h1', {}, 'Account ', id(acc)), copyButton(acc)),
    h('p', { class: 'sub' }, 'in workspace ', id(ws, uiWorkspace(ws))),
    cards,
    notice,
    h('div', { class: 'columns' },
      section('Timeline', { id: 'timeline-title' }, h('p', { class: 'sub' }, 'Changes of state, newest first.'), timelineBody),
      section('Recent events', { id: 'events-title', wide: true }, eventsBody)));

  // The rows of each list drawn, kept across Back and a reload (up to MOST each).
  const view = kept({ timelineRows: TIMELINE_PAGE, eventsRows: EVENTS_PAGE });
  const shown = (list, rows) => {
    view[rows] = list.items.length;
    keep(view);
  };
  const timeline = { items: [], nextCursor: null, error: null };
  const events = { items: [], nextCursor: null, error: null, moreError: null, trimmed: false, removed: 0 };
  // Events drawn that retention or `prune` removed since are taken off once a read of the newest
  // (the 15 s refresh's, at the latest) shows them gone and the primary says so, under a note
  // saying how many; the newest are read again in their place (with the timeline, whose older
  // changes may go with them).
  const gone = removals(removedFromStore, () => loaded && takeOffRemoved());
  const dropRemoved = (page, sentAt) => {
    const { items, removed } = page ? gone.newest(events.items, page, sentAt) : gone.drop(events.items);
    events.items = items;
    events.removed += removed;
    return removed;
  };
  /** Whether events were taken off (those the primary said were removed): then drawn again. */
  const takeOffRemoved = (page, sentAt) => {
    if (!dropRemoved(page, sentAt)) return false;
    drawEvents();
    loadEvents();
    later();
    return true;
  };
  let entryMissing = null;

  // ---- the account ----

  function drawEntry(entry) {
    if (!entry) {
      fill(cards, note('empty', 'No status for account ', h('bdi', {}, acc), ' in this workspace yet (the service answered 404: ',
        said(entryMissing), '): an account has one from its first event of a known type, and this page shows it as soon as one arrives.',
        ' Its events of other types, if any, are listed below.'));
      fill(notice);
      return;
    }
    const card = (title, cat, extra) => h('section', { class: 'card', 'aria-label': title },
      h('h2', {}, title),
      stateCell(cat),
      h('dl', {},
        h('dt', {}, 'Latest event'),
        h('dd', {}, cat.lastEvent ? [eventType(cat.lastEvent.eventType), ' ', rel(cat.lastEvent.occurredAt)] : h('span', { class: 'muted' }, 'none')),
        extra));
    const at = (label, ts) => [h('dt', {}, label), h('dd', {}, rel(ts))];
    fill(cards,
      card('Account', entry.account),
      card('Link', entry.link),
      card('Sync', entry.sync, [
        at('Last complete', entry.sync.lastCompletedAt),
        at('Last error', entry.sync.lastErrorAt),
        at('Last paused', entry.sync.lastPausedAt),
      ]));
    fill(notice, lacksSince(entry) ? note('empty', SINCE_MISSING) : null);
  }

  async function loadEntry() {
    try {
      const entry = await api(base);
      entryMissing = null;
      drawEntry(entry);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        entryMissing = err.problem.detail || 'not found';
        drawEntry(null);
      } else fill(cards, problemNote(err, 'This account cannot be shown'));
    }
  }

  // ---- payloads on request ----

  // The payloads open in each table (hook id → the event once read), opened again when a live
  // update draws the table anew.
  const opened = { timeline: new Map(), events: new Map() };

  /** A button that opens, under its row, a row with the event's payload (read when not known). */
  function payloadButton(where, hookId, known, what) {
    const b = h('button', { type: 'button', class: 'small', 'aria-expanded': 'false', 'aria-label': `Payload of ${what}`, 'data-hook': hookId }, 'Payload');
    b.addEventListener('click', () => {
      if (opened[where].has(hookId)) {
        opened[where].delete(hookId);
        const next = b.closest('tr').nextElementSibling;
        if (next?.classList.contains('detail')) next.remove();
        b.setAttribute('aria-expanded', 'false');
      } else {
        opened[where].set(hookId, known);
        showPayload(where, b);
      }
    });
    return b;
  }

  /** The row under `b`'s with its event's payload: at once when the event is known. */
  async function showPayload(where, b) {
    const tr = b.closest('tr');
    const hookId = b.dataset.hook;
    const cell = h('td', { colspan: tr.children.length });
    tr.after(h('tr', { class: 'detail', 'data-key': `${tr.dataset.key} payload` }, cell));
    b.setAttribute('aria-expanded', 'true');
    // The event as drawn, if it is: its delivery count may be newer than the one kept when opened.
    let event = events.items.find((e) => e.hookId === hookId) ?? opened[where].get(hookId);
    if (!event) {
      fill(cell, note('loading', 'Loading the payload…'));
      try {
        event = await api(p('events', hookId));
        if (opened[where].has(hookId)) opened[where].set(hookId, event);
      } catch (err) {
        fill(cell, problemNote(err, 'The payload cannot be shown'));
        return;
      }
    }
    fill(cell,
      h('p', { class: 'sub' }, 'Hook ', id(hookId), ` · received ${utc(event.receivedAt)}`,
        event.deliveryCount > 1 ? ` · delivered ${event.deliveryCount} times, last ${utc(event.lastReceivedAt)}` : '',
        event.signatureVerified ? ' · signature verified' : ' · unsigned'),
      json(event.payload));
  }

  /** `t`, a table of `where` just built, with the payloads that were open opened again. */
  function reopened(where, t) {
    for (const b of t.querySelectorAll('button[data-hook]')) {
      if (opened[where].has(b.dataset.hook)) showPayload(where, b);
    }
    return t;
  }

  // ---- the timeline ----

  const changeKey = (c) => `${c.at} ${c.category} ${c.hookId}`;

  function drawTimeline() {
    if (timeline.error) {
      const err = timeline.error;
      if (err.status === 404 && !entryMissing) {
        fill(timelineBody, note('empty', 'This service does not keep timelines yet: GET …/timeline answered 404',
          err.problem?.detail ? [' (', said(err.problem.detail), ')'] : '', '. The current states are above, the events beside.'));
      } else if (err.status === 404) fill(timelineBody, note('empty', 'No changes yet.'));
      else fill(timelineBody, problemNote(err, 'The timeline cannot be shown'));
      return;
    }
    if (!timeline.items.length) {
      fill(timelineBody, note('empty', 'No changes of state yet.'));
      return;
    }
    fill(timelineBody,
      reopened('timeline', table([
        { label: 'When', cell: (c) => rel(c.at) },
        { label: 'Category', cell: (c) => h('span', { class: 'category' }, c.category) },
        { label: 'Change', cls: 'col-wide', cell: (c) => h('span', { class: 'change' }, stateCell({ state: c.from }), h('span', { class: 'arrow', 'aria-hidden': 'true' }, '→'), h('span', { class: 'sr-only' }, ' to '), stateCell({ state: c.to })) },
        { label: 'Event', cell: (c) => payloadButton('timeline', c.hookId, events.items.find((e) => e.hookId === c.hookId), `the change of ${c.category} to ${c.to} at ${utc(c.at)}`) },
      ], timeline.items, { caption: 'Timeline', key: changeKey })),
      timeline.nextCursor && h('button', { type: 'button', class: 'more', 'data-key': 'older', onclick: () => loadTimeline(true) }, 'Show older changes'));
  }

  const timelineReads = pagedReads(timeline);

  /** The next page, or (again) as many of the newest changes as are shown (or were, before Back
   * or a reload), up to MOST: an event that arrived late can change older entries too. */
  async function loadTimeline(more) {
    const fail = (err) => { timeline.error = err; };
    const drawn = more
      ? await timelineReads.older(
        (cursor) => api(q(`${base}/timeline`, { limit: TIMELINE_PAGE, cursor })),
        (page) => {
          timeline.items = [...timeline.items, ...page.items];
          timeline.nextCursor = page.nextCursor;
          timeline.error = null;
          shown(timeline, 'timelineRows');
        }, fail)
      : await timelineReads.newest(
        () => api(q(`${base}/timeline`, { limit: Math.min(MOST, Math.max(view.timelineRows, timeline.items.length)) })),
        (page) => {
          const last = page.items.at(-1);
          if (page.nextCursor && last && timeline.items.length > page.items.length) {
            // More are drawn than were read again: those older than the read ones stay, and so
            // does the cursor after them.
            const read = new Set(page.items.map(changeKey));
            timeline.items = [...page.items, ...timeline.items.filter((c) => compareTimes(c.at, last.at) <= 0 && !read.has(changeKey(c)))];
          } else {
            timeline.items = page.items;
            timeline.nextCursor = page.nextCursor;
          }
          timeline.error = null;
        }, fail);
    if (drawn) drawTimeline();
  }

  // ---- the events ----

  function drawEvents() {
    if (events.error) {
      fill(eventsBody, problemNote(events.error, 'The events cannot be shown'));
      return;
    }
    const removed = events.removed ? removedNote(events.removed) : null;
    if (!events.items.length) {
      fill(eventsBody, removed, note('empty', 'No events of this account.'));
      return;
    }
    fill(eventsBody,
      removed,
      reopened('events', table([
        { label: 'Occurred', cell: (e) => rel(e.occurredAt) },
        { label: 'Type', cell: (e) => eventType(e.eventType) },
        { label: 'Result', cell: (e) => result(e.result) },
        { label: 'Deliveries', cls: 'col-num', cell: (e) => h('span', { class: 'num' }, num(e.deliveryCount)) },
        { label: 'Hook id', cls: 'col-id', cell: (e) => id(e.hookId) },
        { label: 'Payload', head: h('span', { class: 'sr-only' }, 'Payload'), cell: (e) => payloadButton('events', e.hookId, e, `the ${e.eventType} event at ${utc(e.occurredAt)}`) },
      ], events.items, { caption: 'Recent events', compact: true, key: (e) => e.hookId, rowClass: (e) => (e.fresh ? 'flash' : null) })),
      events.moreError && problemNote(events.moreError, 'The older events cannot be shown'),
      (events.nextCursor || events.trimmed) && h('button', { type: 'button', class: 'more', 'data-key': 'older', onclick: loadMoreEvents },
        events.moreError ? 'Try again to show older events' : 'Show older events'));
    for (const e of events.items) delete e.fresh;
  }

  // Live events are drawn together, at most every 100 ms, not one table at each; and not while a
  // button of the table is being pressed (up to HOLD_MS), which a redraw between the press and its
  // release would take the click from.
  let drawing = null;
  let pressedAt = 0;
  const press = (e) => {
    if (e.type === 'pointerdown' || e.key === ' ' || e.key === 'Enter') pressedAt = performance.now();
  };
  const release = () => {
    pressedAt = 0;
  };
  eventsBody.addEventListener('pointerdown', press);
  eventsBody.addEventListener('keydown', press);
  for (const type of ['pointerup', 'pointercancel', 'keyup', 'click']) eventsBody.addEventListener(type, release);
  const drawEventsSoon = () => {
    drawing ??= setTimeout(function draw() {
      if (pressedAt && performance.now() - pressedAt < HOLD_MS) {
        drawing = setTimeout(draw, 100);
        return;
      }
      drawing = null;
      drawEvents();
    }, 100);
  };
  // The live events drawn that a read of the newest (answered `page`) may not hold: those that
  // came after it was made, in its span or newer. The read's own rows replace the others, each
  // with the higher delivery count of the two: a count never goes down while its event is kept,
  // and a read may be answered after a newer one (the 15 s refresh's) was drawn.
  const withLive = (page) => {
    const drawn = new Map(events.items.map((e) => [e.hookId, e]));
    for (const e of page.items) {
      const was = drawn.get(e.hookId);
      if (was?.deliveryCount > e.deliveryCount) Object.assign(e, { deliveryCount: was.deliveryCount, lastReceivedAt: was.lastReceivedAt });
    }
    const oldest = page.items.at(-1);
    const have = new Set(page.items.map((e) => e.hookId));
    const live = events.items.filter((e) => !have.has(e.hookId) && (!oldest || !page.nextCursor || newestFirst(e, oldest) < 0));
    return live.length ? [...page.items, ...live].sort(newestFirst) : page.items;
  };

  const eventsReads = pagedReads(events);
  const eventsPath = (cursor, limit = EVENTS_PAGE) => q(p('workspaces', ws, 'events'), { integrationAccountId: acc, limit, cursor });
  const eventsPage = (cursor) => api(eventsPath(cursor));

  /** The newest events, as many as are drawn (or were, before Back or a reload), up to MOST. */
  async function loadEvents() {
    const rows = Math.min(MOST, Math.max(view.eventsRows, events.items.length));
    const sentAt = gone.sent();
    const drawn = await eventsReads.newest(
      () => api(eventsPath(null, rows)),
      (page) => {
        dropRemoved(page, sentAt);
        Object.assign(events, page, { items: withLive(page), error: null, moreError: null, trimmed: false });
      },
      (err) => { events.error = err; });
    if (drawn) drawEvents();
  }

  async function loadMoreEvents() {
    // Live events pushed the oldest drawn out, so the cursor (after them) would skip those: the
    // newest are read again, a page more, and paging goes on from there.
    // A failed read leaves the rows drawn, under a note and the button to try again.
    if (events.trimmed) {
      const rows = events.items.length + EVENTS_PAGE;
      const sentAt = gone.sent();
      const drawn = await eventsReads.newest(
        () => api(eventsPath(null, Math.min(MOST, rows))),
        (page) => {
          dropRemoved(page, sentAt);
          Object.assign(events, page, { items: withLive(page), moreError: null, trimmed: false });
          shown(events, 'eventsRows');
        },
        (err) => { events.moreError = err; });
      if (drawn) drawEvents();
      if (rows <= MOST || events.trimmed || events.moreError) return;
    }
    const drawn = await eventsReads.older(
      eventsPage,
      (page) => {
        gone.took(page);
        const have = new Set(events.items.map((e) => e.hookId));
        events.items.push(...page.items.filter((e) => !have.has(e.hookId)));
        events.nextCursor = page.nextCursor;
        events.moreError = null;
        shown(events, 'eventsRows');
      },
      // Said under the events drawn, with the button to try again (a rejection unhandled here
      // would say nothing on the page).
      (err) => { events.moreError = err; });
    if (drawn) drawEvents();
  }

  // ---- live ----

  // The account and the newest changes are read again soon after a message, one read at a time:
  // while the service cannot be reached each read waits for it, retrying every 5 s, and a message
  // every second or so had as many reads doing so side by side, each reading everything again once
  // it answered. A message that comes during a read has one more read made after it (the read
  // under way may have been sent before its change was stored).
  let pending = null;
  let refreshing = false;
  let changedMeanwhile = false;
  function later() {
    pending ??= setTimeout(async () => {
      pending = null;
      if (refreshing) {
        changedMeanwhile = true;
        return;
      }
      refreshing = true;
      try {
        await Promise.all([loadEntry(), loadTimeline(false)]);
      } finally {
        refreshing = false;
        if (changedMeanwhile) {
          changedMeanwhile = false;
          later();
        }
      }
    }, 300);
  }

  // Read whenever the stream opens without a position (it carries only what is stored after it
  // opened), one read after another; a message that comes meanwhile has the events read again.
  // The first read does not wait for the stream (which may wait long for a connection): see
  // workspace.js.
  let loaded = false;
  let missed = false;
  let reading = Promise.resolve();
  const load = () => (reading = reading.then(read));
  load();
  async function read() {
    loaded = false;
    missed = false;
    await loadEntry();
    await Promise.all([loadTimeline(false), loadEvents()]);
    loaded = true;
    if (missed) {
      await loadEvents();
      later();
    }
  }

  follow(q(p('workspaces', ws, 'stream'), { integrationAccountId: acc }), {
    onMessage: (type, data) => {
      if (!loaded) {
        missed = true; // read again once the read is done
        return;
      }
      if (type === 'status' && data.status) drawEntry(data.status);
      // An event older than the oldest drawn, while older ones are still to be paged in, is
      // left to "Show older events": drawn now, it would be out of place and drawn twice then.
      const oldest = events.items.at(-1)?.occurredAt;
      const beyond = (events.nextCursor || events.trimmed) && oldest && compareTimes(data.occurredAt, oldest) < 0;
      if (type === 'event' && !beyond && !events.items.some((e) => e.hookId === data.hookId)) {
        events.items = [{ ...data, fresh: true }, ...events.items]
          .sort(newestFirst);
        // As many rows as were drawn (MOST at most), the newest: left open through a storm, the
        // page would otherwise keep every event and draw them all again at each one.
        const rows = Math.min(MOST, Math.max(EVENTS_PAGE, view.eventsRows));
        if (events.items.length > rows) {
          events.items.length = rows;
          events.trimmed = true;
        }
        drawEventsSoon();
      }
      later();
    },
    onState: (kind) => {
      conn(kind);
      if (kind === 'stopped' && !loaded) load(); // the page says why from its own read
    },
    onOpen: load,
  });
  // A redelivery is not in the stream (SPEC §10): as many of the newest events as are drawn are
  // read every 15 s (which is also the page's check that the service answers), and those drawn
  // get their delivery counts: higher ones only, as an answer may come after a newer read's.
  // Those it shows removed from history are taken off (see `gone` above).
  let watchSent = 0;
  watch(() => {
    watchSent = gone.sent();
    return eventsPath(null, Math.min(MOST, Math.max(EVENTS_PAGE, events.items.length)));
  }, (page) => {
    if (!loaded || takeOffRemoved(page, watchSent)) return;
    const now = new Map(page.items.map((e) => [e.hookId, e]));
    const stale = events.items.filter((e) => now.has(e.hookId) && now.get(e.hookId).deliveryCount > e.deliveryCount);
    for (const e of stale) Object.assign(e, now.get(e.hookId));
    if (stale.length) drawEvents();
  });
}

/**
 * The reads of one paged list (`{ items, nextCursor }`, newest first). A read of the newest page
 * supersedes every read before it, an older page's too: only the newest such read's answer is
 * used. An older page is read once at a time, and used only while the list is still the one its
 * cursor came from (no read of the newest began since, and the cursor is still the list's), so
 * that walking the pages yields every item once (SPEC §5, §11). `newest` and `older` resolve to
 * whether they used the answer (or the error), that is, whether the list is to be drawn again.
 */
function pagedReads(list) {
  let reads = 0;
  let older = null; // the cursor of the older page being read
  async function use(mine, cursor, read, took, failed) {
    const stale = () => mine !== reads || (cursor !== null && list.nextCursor !== cursor);
    try {
      const page = await read(cursor);
      if (stale()) return false;
      took(page);
    } catch (err) {
      if (stale()) return false;
      failed(err);
    }
    return true;
  }
  return {
    newest: (read, took, failed) => use(++reads, null, read, took, failed),
    async older(read, took, failed) {
      const cursor = list.nextCursor;
      if (!cursor || older === cursor) return false; // none, or that page is being read already
      older = cursor;
      try {
        return await use(reads, cursor, read, took, failed);
      } finally {
        if (older === cursor) older = null;
      }
    },
  };
}
