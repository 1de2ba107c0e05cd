// The dashboard's entry: picks the page from the path, and keeps the header (where you are, the
// connection, exact or relative times, the token) and the banner (the service cannot be reached)
// up to date.

import { forgetToken, onChange, state } from './api.js';
import { copyWholeIds, exactTimes, fill, h, id, onExactTimes, rel, setExactTimes, tick, uiWorkspace } from './view.js';
import overview from './overview.js';
import workspace from './workspace.js';
import account from './account.js';

const main = document.getElementById('main');
const crumbs = document.getElementById('crumbs');
const connEl = document.getElementById('conn');
const connTime = document.getElementById('conn-time');
const authEl = document.getElementById('auth');
const banner = document.getElementById('banner');
const bannerWhat = document.getElementById('banner-what');
const bannerRetry = document.getElementById('banner-retry');

/**
 * The page's stream: 'live', 'reconnecting', 'token' (refused, waiting for a token), 'hidden'
 * (closed while the tab is hidden) or 'stopped'; shown as 'reconnecting' while the service does
 * not answer the page's other calls (a database outage leaves a stream open), and as the stream
 * is again once it does. Only a change of that is announced (the live region); the time of the
 * last update beside it is not.
 */
let streamKind = null;
let shownKind = null;
let lastUpdate = null;
function conn(kind) {
  streamKind = kind;
  if (kind === 'live') lastUpdate = new Date().toISOString();
  showConn();
}

function showConn() {
  const kind = state.offline && streamKind === 'live' ? 'reconnecting' : streamKind;
  if (!kind) return;
  if (kind !== shownKind) {
    shownKind = kind;
    const dot = (tone) => h('span', { class: `dot dot-${tone}`, 'aria-hidden': 'true' });
    if (kind === 'live') fill(connEl, dot('ok'), 'live');
    else if (kind === 'stopped') fill(connEl, dot('none'), 'not live');
    else if (kind === 'token') fill(connEl, dot('none'), 'not live: waiting for a token');
    else if (kind === 'hidden') fill(connEl, dot('none'), 'paused while the tab is hidden');
    else fill(connEl, dot('none'), 'reconnecting…');
  }
  fill(connTime, kind !== 'live' && lastUpdate && [' · last update ', rel(lastUpdate)]);
}

function showAuth({ auth, offline }) {
  showConn();
  if (auth === 'open') fill(authEl, 'no token needed');
  else if (auth === 'token') {
    fill(authEl, 'token in use ',
      h('button', { type: 'button', class: 'link', onclick: forgetToken }, 'Forget'));
  } else if (auth === 'needed' || auth === 'refused') fill(authEl, h('span', { class: 'warn-text' }, 'token needed'));
  else fill(authEl);
  banner.hidden = !offline;
  // Only what is wrong is in the alert, so that it is read out once, not at every second of
  // the countdown beside it.
  if (bannerWhat.textContent !== (offline?.what ?? '')) bannerWhat.textContent = offline?.what ?? '';
  bannerRetry.textContent = offline ? `; ${offline.retry}` : '';
}

function route(pathname) {
  if (pathname === '/ui' || pathname === '/ui/') return { page: overview, args: [] };
  let parts;
  try {
    parts = pathname.replace(/\/$/, '').split('/').slice(2).map(decodeURIComponent);
  } catch {
    return null;
  }
  if (parts.length === 2 && parts[0] === 'workspaces' && parts[1]) return { page: workspace, args: [parts[1]] };
  if (parts.length === 4 && parts[0] === 'workspaces' && parts[2] === 'accounts' && parts[1] && parts[3]) {
    return { page: account, args: [parts[1], parts[3]] };
  }
  return null;
}

function crumbsFor(pathname, args) {
  const items = [h('a', { href: '/ui' }, 'Overview')];
  if (args.length >= 1) items.push(h('span', { class: 'crumb-kind' }, 'workspace'), id(args[0], args.length > 1 ? uiWorkspace(args[0]) : null));
  if (args.length >= 2) items.push(h('span', { class: 'crumb-kind' }, 'account'), id(args[1]));
  items.at(-1).setAttribute('aria-current', 'page'); // the page this is, read out as such
  return items;
}

function notFound(pathname) {
  document.title = 'No such page · calry-hooks';
  fill(main,
    h('h1', {}, 'No such page'),
    h('p', { class: 'note note-empty' }, 'There is no dashboard page at ', h('code', {}, h('bdi', {}, pathname)), '. ',
      h('a', { href: '/ui' }, 'Go to the overview'), '.'));
}

// The pages draw what they read after they load, too late for the browser to put the scroll
// position back on Back, Forward or a reload: it is kept in the history entry instead, and put
// back once nothing on the page is loading (unless the person has scrolled or typed meanwhile).
const SCROLL_KEPT_MS = 250;
const SCROLL_BACK_MS = 15000;
history.scrollRestoration = 'manual';
let keeping = null;
addEventListener('scroll', () => {
  keeping ??= setTimeout(() => {
    keeping = null;
    history.replaceState({ ...history.state, scrollY }, '');
  }, SCROLL_KEPT_MS);
}, { passive: true });

function scrollBack() {
  const y = history.state?.scrollY;
  if (!y) return;
  const moves = ['wheel', 'touchstart', 'keydown', 'mousedown'];
  const done = () => {
    watcher.disconnect();
    clearTimeout(giveUp);
    for (const m of moves) removeEventListener(m, done, true);
  };
  const drawn = () => main.querySelector('h1') && !main.querySelector('.note-loading');
  const watcher = new MutationObserver(() => {
    if (!drawn()) return;
    done();
    scrollTo(0, y);
  });
  const giveUp = setTimeout(done, SCROLL_BACK_MS);
  for (const m of moves) addEventListener(m, done, { capture: true, passive: true });
  watcher.observe(main, { childList: true, subtree: true });
}

// One button for the page shows every time on it exact (UTC) or relative, the choice kept across
// pages and reloads (view.js): a finger and the keyboard have no hover for a time's title.
const timesButton = document.getElementById('times');
const showTimes = (on) => timesButton.setAttribute('aria-pressed', String(on));
timesButton.addEventListener('click', () => setExactTimes(!exactTimes()));
onExactTimes(showTimes);
showTimes(exactTimes());
timesButton.hidden = false;

onChange(showAuth);
showAuth(state);
copyWholeIds();
setInterval(tick, 1000);

const found = route(location.pathname);
if (!found) {
  fill(crumbs, h('a', { href: '/ui' }, 'Overview'));
  notFound(location.pathname);
} else {
  fill(crumbs, crumbsFor(location.pathname, found.args));
  scrollBack();
  found.page(main, { conn }, ...found.args);
}
