// Every call to the JSON API goes through here: the bearer token (asked for once, on the first
// 401, and kept in sessionStorage only), retries while the service cannot be reached, and
// problem+json errors turned into ApiError.

import { fill, h, note, said as words } from './view.js';

const KEY = 'calry-hooks.token';
const RETRY_SECS = 5;
// The longest a call waits for its answer, and then for each next part of its body: a service
// that is stopped (or a connection that died without being closed) never answers, and the page
// would say nothing for ever. A body that keeps coming is read to its end however long it takes:
// a workspace of 3,000 accounts is 1.5 MB, half a minute at 50 KB/s (a VPN from afar), and a
// limit on the whole read cut it short at every try, for ever.
export const ANSWER_MS = 10000;
const NO_ANSWER = `The service has not answered for ${ANSWER_MS / 1000} s`;
// How often a token dialog asks whether the service still needs a token, and with what call.
const OPEN_PROBE_MS = 10000;
const OPEN_PROBE = '/workspaces?limit=1';

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

// A tab has a session storage of its own, also one opened from a link of another: before asking
// the person, a tab asks the dashboard's other open tabs for their token (a BroadcastChannel
// reaches only this origin's pages, and holds nothing once they are closed). "Forget" forgets it
// in every tab.
const tabs = typeof BroadcastChannel === 'function' ? new BroadcastChannel(KEY) : null;
tabs?.addEventListener('message', (e) => {
  if (e.data === 'asking' && token.get()) tabs.postMessage({ token: token.get() });
  if (e.data === 'forget' && token.get()) {
    token.clear();
    location.reload();
  }
});

/** The token of another open tab, or null after `ms` with none. */
function fromOtherTabs(ms = 300) {
  if (!tabs) return Promise.resolve(null);
  return new Promise((resolve) => {
    const take = (e) => e.data?.token && done(e.data.token);
    const done = (t) => {
      tabs.removeEventListener('message', take);
      clearTimeout(timer);
      resolve(t);
    };
    const timer = setTimeout(() => done(null), ms);
    tabs.addEventListener('message', take);
    tabs.postMessage('asking');
  });
}

/** Forgets the token, in every tab, and loads the page again. */
export function forgetToken() {
  token.clear();
  tabs?.postMessage('forget');
  location.reload();
}

/** An answer other than 2xx (401 and 503 excepted: those are handled here). */
export class ApiError extends Error {
  constructor(status, problem, path) {
    super(`The service answered ${status}${problem.detail ? `: ${problem.detail}` : ''}`);
    this.status = status;
    this.problem = problem;
    this.path = path;
  }
}

const listeners = new Set();
/** Calls `fn({auth, offline})` whenever what is known about the token or the service changes,
 * until the function returned is called. */
export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}
export const state = { auth: 'unknown', offline: null };
function changed(patch) {
  Object.assign(state, patch);
  for (const fn of listeners) fn(state);
}

export function authHeaders() {
  const t = token.get();
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** GET `path` (with query) and parse its JSON, waiting for a token or for the service as needed;
 * `primary` asks for the primary database rather than a replica behind it (README "Read replicas"). */
export async function api(path, { primary = false } = {}) {
  const from = primary ? { 'Calry-Hooks-Read-From': 'primary' } : {};
  for (;;) {
    const used = token.get();
    let res;
    // The body too (see ANSWER_MS). Its timeout is told by the signal, not by the error's name:
    // WebKit (Safari) rejects a fetch, or the read of its body, cut short by it with an
    // AbortError, not with a TimeoutError as Chromium and Firefox do.
    const { signal, wait, done } = silence(ANSWER_MS);
    try {
      res = await fetch(path, { headers: { Accept: 'application/json', ...from, ...authHeaders() }, cache: 'no-store', signal });
    } catch {
      done();
      await unreachable(signal.aborted ? NO_ANSWER : 'Cannot reach the service');
      continue;
    }
    wait(); // for the body now
    if (res.status === 401) {
      reachable(); // it answered: the banner goes, whether or not a token is given
      const { detail } = await problemOf(res);
      done();
      await tokenRefused(used, detail);
      continue;
    }
    if (res.status === 503) {
      done();
      await unreachable('The service is unavailable (503)');
      continue;
    }
    reachable();
    if (state.auth !== (used ? 'token' : 'open')) changed({ auth: used ? 'token' : 'open' });
    // What is on screen was read with one token (or none): read with another, it all is again.
    if (readWith !== undefined && used !== readWith) location.reload();
    readWith = used;
    if (!res.ok) {
      const problem = await problemOf(res);
      done();
      throw new ApiError(res.status, problem, path);
    }
    try {
      return await jsonOf(res, wait);
    } catch (e) {
      if (!signal.aborted) throw e;
      await unreachable(NO_ANSWER);
    } finally {
      done();
    }
  }
}

/** A signal that aborts once `ms` pass with no `wait()` since (each `wait()` starts them again),
 * `done()` to stop the wait, and `stop()` to abort at once. */
export function silence(ms) {
  const abort = new AbortController();
  let timer = null;
  const done = () => clearTimeout(timer);
  const wait = () => {
    done();
    timer = setTimeout(() => abort.abort(), ms);
  };
  const stop = () => {
    done();
    abort.abort();
  };
  wait();
  return { signal: abort.signal, wait, done, stop };
}

/** The JSON of `res`'s body, calling `progress()` at each part of it that arrives. */
async function jsonOf(res, progress) {
  if (!res.body) return res.json();
  const reader = res.body.getReader();
  const parts = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    parts.push(value);
    progress();
  }
  return new Response(new Blob(parts)).json();
}

export async function problemOf(res) {
  try {
    const body = await res.json();
    return body && typeof body === 'object' ? body : {};
  } catch {
    return { detail: res.statusText };
  }
}

// One countdown for every call that is waiting for the service (the banner says so: `what`
// once, then the countdown); it ends early once the service answered something else meanwhile
// (a stream that came back).
let waiting = null;
export function unreachable(what) {
  waiting ??= (async () => {
    for (let left = RETRY_SECS; left > 0; left--) {
      changed({ offline: { what, retry: `retrying in ${left} s.` } });
      await new Promise((r) => setTimeout(r, 1000));
      if (!state.offline) return;
    }
    changed({ offline: { what, retry: 'retrying now…' } });
  })().finally(() => (waiting = null));
  return waiting;
}

/** The service answered: the banner goes. */
export function reachable() {
  if (state.offline) changed({ offline: null });
}

// The token (or null: none) the data on screen was read with; undefined before any read.
let readWith;

// One prompt for every call that met a 401; they all go on with the token given. Once the
// person cancels it, later 401s are not asked about again (the page offers a button instead).
let prompt = null;
let declined = false;
let emptied = false; // what was read without a token was taken off the page
let refused = null; // what the service said when it refused a token, since the last one given
let refusedToken = null; // the last token refused: another tab may not know yet
/**
 * A 401 answered a request made with `used` (a token, or null). A refused token is forgotten,
 * what it read is taken off the page, and the call is made again without one (the service may
 * need none now: its last token was revoked). Without one, a token is asked for. Resolves once
 * the call may be made again; rejects (ApiError 401) when the person cancels.
 */
export function tokenRefused(used, detail) {
  const now = token.get();
  if (now && now !== used) return Promise.resolve(); // another call got a new one meanwhile
  if (used) {
    token.clear();
    refused = detail || '';
    refusedToken = used;
    if (readWith === used) {
      fill(document.getElementById('main'), note('error', 'The token in use was refused: what it read is no longer shown. ',
        h('button', { type: 'button', onclick: () => location.reload() }, 'Enter a token')));
    }
    return Promise.resolve();
  }
  if (readWith === null && !emptied) {
    // What is on screen was read without a token, and the service needs one now (its first
    // token was made): it is taken off the page as a refused token's is. `readWith` stays null,
    // so that the first answer read with the token given loads the page again (in api()): the
    // page reads all its data anew, with the token.
    emptied = true;
    fill(document.getElementById('main'), note('error', 'The service needs a token now: what was read without one is no longer shown. ',
      h('button', { type: 'button', onclick: () => location.reload() }, 'Enter a token')));
  }
  changed({ auth: refused !== null ? 'refused' : 'needed' });
  if (declined) return Promise.reject(new ApiError(401, { detail: 'no token was given' }, null));
  prompt ??= fromOtherTabs().then((t) => {
    if (!t || t === refusedToken) return ask(refused !== null, refused ?? detail);
    token.set(t);
    changed({ auth: 'token' });
    return undefined;
  }).finally(() => (prompt = null));
  return prompt;
}

// Where the keyboard focus goes once the token dialog closes: back where it was when the dialog
// opened, or, when that is gone (the page was redrawn meanwhile) or was nowhere (the dialog opened
// as the page loaded), to the page's main content, not to <body>: the next Tab goes on from there,
// and a screen reader reads on from there.
function focusAfterDialog(opener) {
  const main = document.getElementById('main');
  const back = opener && opener !== document.body && opener.isConnected && !opener.closest('dialog') ? opener : main;
  if (document.activeElement === back) return;
  back.focus({ preventScroll: back === main });
}

function ask(wasRefused, detail) {
  const opener = document.activeElement;
  const dialog = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  const cancel = document.getElementById('token-cancel');
  const reason = document.getElementById('token-reason');
  const said = document.getElementById('token-detail');
  const tell = (title, why, detail) => {
    document.getElementById('token-title').textContent = title;
    reason.textContent = why;
    said.hidden = !detail;
    fill(said, detail && ['The service said: “', words(detail), '”']);
  };
  tell(wasRefused ? 'The token was refused' : 'A token is needed', wasRefused
    ? 'The service answered 401 to the token in use: it was revoked, or mistyped. Enter another.'
    : 'The service answered 401: its query routes need a bearer token.', detail);
  input.value = '';
  return new Promise((resolve, reject) => {
    // While this waits, the service may come to need no token (its last one was revoked): it is
    // asked without one every so often, and the dialog goes once it answers.
    const probe = setInterval(async () => {
      try {
        const res = await fetch(OPEN_PROBE, { headers: { Accept: 'application/json' }, cache: 'no-store', signal: AbortSignal.timeout(ANSWER_MS) });
        if (res.ok) done(null, true);
      } catch {
        // unreachable: the dialog stays, and the calls waiting behind it say so once they go on
      }
    }, OPEN_PROBE_MS);
    let over = false;
    const done = (given, open = false) => {
      if (over) return;
      over = true;
      clearInterval(probe);
      form.removeEventListener('submit', submit);
      cancel.removeEventListener('click', quit);
      dialog.removeEventListener('cancel', quit);
      if (dialog.open) dialog.close();
      focusAfterDialog(opener);
      if (given || open) {
        if (given) token.set(given);
        refused = null;
        changed({ auth: given ? 'token' : 'open' });
        resolve();
      } else {
        declined = true;
        reject(new ApiError(401, { detail: 'no token was given' }, null));
      }
    };
    // A token given is tried before the dialog goes: a wrong one is refused here, the dialog
    // staying open with the focus in its field (its text selected, to type over), not closed and
    // opened again. It is kept (and offered to other tabs) only once the service took it.
    let trying = false;
    const submit = async (e) => {
      e.preventDefault();
      const given = input.value.trim();
      if (!given || trying) return;
      trying = true;
      let res = null;
      try {
        res = await fetch(OPEN_PROBE, { headers: { Accept: 'application/json', Authorization: `Bearer ${given}` }, cache: 'no-store', signal: AbortSignal.timeout(ANSWER_MS) });
      } catch {
        // unreachable: the calls waiting behind the dialog try the token, and say so
      }
      trying = false;
      if (res?.status !== 401) return done(given);
      const detail = (await problemOf(res)).detail;
      if (over) return; // the service came to need no token meanwhile
      reason.textContent = ''; // announced (a live region) also when it says the same again
      requestAnimationFrame(() => tell('The token was refused',
        'The service answered 401 to that token: it was revoked, or mistyped. Enter another.', detail));
      input.select();
      input.focus();
    };
    const quit = (e) => {
      e.preventDefault();
      done(null);
    };
    form.addEventListener('submit', submit);
    cancel.addEventListener('click', quit);
    dialog.addEventListener('cancel', quit);
    dialog.showModal();
    input.focus(); // showModal() focuses the first control too; this says which, whatever the order
  });
}

/**
 * Asks the service for `path` (or what `path()` gives at the time) every 15 s while the page is
 * open, so that the banner says when it cannot answer (and when it can again) though the page's
 * stream stays open and quiet; the answer goes to `use`, if given.
 */
export function watch(path, use = () => {}) {
  let asking = false;
  setInterval(async () => {
    if (asking) return;
    asking = true;
    await api(typeof path === 'function' ? path() : path).then(use, () => {});
    asking = false;
  }, 15000);
}

/** A path with its query string: `q('/x', {a: 1, b: null})` → `/x?a=1`. */
export function q(path, params = {}) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== '') search.set(k, v);
  const s = search.toString();
  return s ? `${path}?${s}` : path;
}

/** `/a/{b}` with each segment encoded. A segment of only dots throws: a browser resolves `.` and
 * `..` (also written `%2E`) against the path, so no request could name such an id. */
export function p(...segments) {
  if (segments.some((s) => s === '.' || s === '..')) {
    throw new Error(`the id "${segments.find((s) => s === '.' || s === '..')}" cannot be put in a URL path`);
  }
  return '/' + segments.map(encodeURIComponent).join('/');
}

/** Whether the primary database no longer holds the event `hookId`: true (`404`: retention or
 * `prune` removed it), false (it answered the event). Any other answer, or none, rejects: it
 * tells neither. */
export const removedFromStore = (hookId) => api(p('events', hookId), { primary: true })
  .then(() => false, (e) => {
    if (e instanceof ApiError && e.status === 404) return true;
    throw e;
  });
