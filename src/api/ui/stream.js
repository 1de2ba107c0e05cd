// Following the live stream (SPEC §10), with fetch and a reader, with or without a token (an
// EventSource cannot send an Authorization header, and does not show the keep-alive comments, so
// it cannot tell a stream that died without being closed from a quiet one), reconnecting with
// Last-Event-ID as an EventSource would.
//
// A connection opened without a position (the first one, or any before a message arrived) starts
// live from the moment it opens: what was stored before is not in it. `onOpen` says so each
// time, and the page reads its data then, so that nothing falls between its read and the stream.
//
// A browser allows 6 connections per host over HTTP/1.1, across all its tabs, and each page holds
// one stream open: a seventh tab would not even load. So a page's stream is closed while its tab
// is hidden (after HIDDEN_MS, so that a quick switch of tabs does not close and open it), and
// opened again, without a position, when the tab is shown: the page reads its data again then,
// as after any opening without a position.

import { authHeaders, onChange, problemOf, reachable, silence, token, tokenRefused, unreachable } from './api.js';

const RETRY_MS = 5000;
const HIDDEN_MS = 5000; // a tab hidden this long has its stream closed
// A stream sends a comment at least every 15 s (SPEC §10): one read with fetch that brings no
// byte for this long died without being closed (a VPN that reconnected, a middlebox that forgot
// the connection), and would say 'live' for ever while nothing comes. It is opened again from
// its last position.
const SILENT_MS = 35000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** An answer that asking again will not change (a 403 or a 404, say): the stream is given up. */
const final = (status) => status >= 400 && status < 500 && status !== 401 && status !== 408 && status !== 429;

/** Waits to try again after `status` (null: no answer): while the service cannot be reached,
 * with the banner's countdown (shared with the API's calls). */
const pause = (status) => (status === null ? unreachable('Cannot reach the service')
  : status === 503 ? unreachable('The service is unavailable (503)') : sleep(RETRY_MS));

/**
 * Follows `path` (a stream route, with its query): `onMessage(type, data)` for each `event` and
 * `status` message, `onState('live' | 'reconnecting' | 'token' | 'hidden' | 'stopped')` as the
 * connection changes ('token': refused, waiting for a token; 'hidden': closed while the tab is
 * hidden), `onOpen()` whenever a connection opens without a position (the page reads its data
 * then). Returns a function that stops following.
 */
export function follow(path, { onMessage, onState: told, onOpen = () => {} }) {
  let lastId = null;
  let stopped = false;
  let hidden = false; // closed while the tab is hidden
  let gaveUp = false; // stopped for an answer that asking again will not change
  let current = null;
  let now = null; // the connection's state
  let openedAt = 0; // when the connection in use opened
  const onState = (kind) => {
    if (kind === 'live' && now !== 'live') openedAt = Date.now();
    now = kind;
    if (kind === 'live') reachable();
    told(kind);
  };
  // Stopped for an answer that asking again will not change.
  const giveUp = () => {
    gaveUp = true;
    onState('stopped');
  };

  const deliver = (type, raw, id) => {
    let data;
    try {
      data = JSON.parse(raw);
    } catch {
      return;
    }
    onMessage(type, data);
    onState('live'); // and the time of the last update
    if (id) lastId = id;
  };

  const start = () => {
    if (stopped || hidden) return;
    current = viaFetch();
  };

  const viaFetch = () => {
    const abort = new AbortController();
    (async () => {
      while (!abort.signal.aborted) {
        const used = token.get();
        let status = null;
        // This connection's own: aborted by `abort` (stopped) or after SILENT_MS of silence.
        const conn = silence(SILENT_MS);
        abort.signal.addEventListener('abort', conn.stop);
        try {
          const headers = { Accept: 'text/event-stream', ...authHeaders() };
          if (lastId) headers['Last-Event-ID'] = lastId;
          const res = await fetch(path, { headers, signal: conn.signal, cache: 'no-store' });
          status = res.status;
          if (res.status === 401) {
            reachable(); // it answered
            onState('token');
            await tokenRefused(used, (await problemOf(res)).detail);
            continue;
          }
          if (final(res.status)) {
            giveUp();
            return;
          }
          if (res.ok && res.body) {
            onState('live');
            if (!lastId) onOpen();
            await read(res.body, deliver, conn.wait);
          }
        } catch (e) {
          if (abort.signal.aborted) return;
          if (e.status === 401) {
            giveUp();
            return;
          }
        } finally {
          conn.done();
          abort.signal.removeEventListener('abort', conn.stop);
        }
        onState('reconnecting');
        // Given up for its silence: opened again at once, without the banner, which would say
        // the service cannot be reached while the page's other calls reach it. A service that
        // really does not answer is told by those calls, and by this one's next silence.
        if (!conn.signal.aborted) await pause(status);
      }
    })();
    return { close: () => abort.abort() };
  };

  // Closed HIDDEN_MS after the tab is hidden, opened again (from no position) once it is shown.
  let hiding = null;
  const visibility = () => {
    if (document.visibilityState === 'hidden') {
      hiding ??= setTimeout(() => {
        hiding = null;
        if (stopped || gaveUp || hidden) return;
        hidden = true;
        current?.close();
        current = null;
        onState('hidden');
      }, HIDDEN_MS);
      return;
    }
    clearTimeout(hiding);
    hiding = null;
    if (!hidden || stopped) return;
    hidden = false;
    lastId = null; // what came while it was closed is read by the page (onOpen)
    onState('reconnecting');
    start();
  };
  document.addEventListener('visibilitychange', visibility);

  // A connection opened before the service stopped answering the page's calls may be dead
  // without having been closed (a stopped service, a proxy or a laptop gone to sleep): once the
  // service answers again, it is opened again from its last position (no gap, no duplicate).
  let silentSince = null;
  const unlisten = onChange(({ offline }) => {
    if (offline) {
      silentSince ??= Date.now();
      return;
    }
    const since = silentSince;
    silentSince = null;
    if (since === null || stopped || hidden || gaveUp || now !== 'live' || openedAt > since) return;
    current?.close();
    onState('reconnecting');
    start();
  });

  start();
  if (document.visibilityState === 'hidden') visibility(); // opened in a tab in the background
  return () => {
    stopped = true;
    clearTimeout(hiding);
    document.removeEventListener('visibilitychange', visibility);
    unlisten();
    current?.close();
  };
}

/** Reads server-sent events from `body` until it ends, calling `deliver(type, data, id)`, and
 * `alive()` at each part that arrives (a comment too). */
async function read(body, deliver, alive) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let type = '';
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    alive();
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, '');
      buffer = buffer.slice(end + 1);
      if (line === '') {
        if (data.length) deliver(type || 'message', data.join('\n'), id);
        type = '';
        data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
      if (field === 'event') type = val;
      else if (field === 'data') data.push(val);
      else if (field === 'id') id = val;
    }
  }
}
