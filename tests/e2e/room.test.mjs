// room.test.mjs -- the demo page's room view in headless Chromium through
// nginx: two pages (Ada, Grace) stream one room from different backends;
// each page's messages are written through the other page's backend; the
// page of one backend is left without it (SIGKILL), reconnects through
// nginx to the survivor and resumes with Last-Event-ID; both pages end with
// the same complete message list, in order, none twice. The gateways run
// with PRESENCE_EVENTS=1, so the member list and the join lines are checked
// too. Screenshots are kept as test artifacts (e2e-room-*.png).
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS, launchChromium } from './chromium.mjs';
import { Cluster, HOST, http, waitFor } from './cluster.mjs';

const ROOM = 'room-1';
const T = 10000;   // every wait's deadline
let c, browser;

before(async () => {
  c = await new Cluster({ env: { PRESENCE_EVENTS: '1' } }).start();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (c) await c.stop();
});

const NAMES = ['backend-1', 'backend-2'];
const otherThan = (name) => (name === 'backend-1' ? 'backend-2' : 'backend-1');

async function streamCounts() {
  const n = {};
  for (const b of NAMES) n[b] = await c.streamsOn(b);
  return n;
}

// Waits until the two backends hold exactly `want` streams ({name: count}).
async function awaitCounts(want) {
  await waitFor(async () => {
    const n = await streamCounts();
    return NAMES.every((b) => n[b] === want[b]);
  }, T, `streams per backend ${JSON.stringify(want)}`);
}

async function roomState(page) {
  return (await page.textContent('#room-state')).trim();
}

async function awaitRoomState(page, want) {
  await page.waitForFunction((w) => document.querySelector('#room-state').textContent === w,
                             want, { timeout: T });
}

// Each page's POST /events goes where posts[page] says: a backend's own
// port (the test forwards the page's request there, exactly as the page
// made it, and hands the page the answer) or, when null, nginx as usual.
// A browser cannot pick a backend behind nginx; the test can.
const posts = new Map();
async function routePosts(page) {
  posts.set(page, null);
  await page.route((u) => u.pathname === '/events', async (route) => {
    const target = posts.get(page);
    if (route.request().method() !== 'POST' || !target) return route.continue();
    const response = await route.fetch({ url: `http://${HOST}:${c.backends[target].port}/events` });
    return route.fulfill({ response });
  });
}

async function openRoomPage(name, viewport = { width: 1280, height: 1100 }) {
  const page = await browser.newPage({ viewport });
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.roomName = name;
  await routePosts(page);
  await page.goto(c.url('/'));
  await page.fill('#room-name', name);
  await page.fill('#room-topic', ROOM);
  await page.click('#room-join');
  await awaitRoomState(page, 'open');
  return page;
}

// Sends through the page's form and waits for the 202; returns what the
// page must show for it (the backend that accepted it is set by routing).
async function send(page, text, serverId) {
  const before = await page.evaluate(() => window.ssegateRoom.sent.length);
  await page.fill('#room-text', text);
  await page.click('#room-send');
  await page.waitForFunction((n) => window.ssegateRoom.sent.length === n + 1, before, { timeout: T });
  const id = await page.evaluate(() => window.ssegateRoom.sent.at(-1).id);
  assert.match(id, /^[0-9]+-[0-9]+$/);
  return { id, name: page.roomName, text, serverId };
}

async function chatLines(page) {
  return page.evaluate(() => window.ssegateRoom.lines.filter((l) => l.type === 'chat.message')
    .map(({ id, name, text, serverId }) => ({ id, name, text, serverId })));
}

// The chat rows as the page shows them: "<id> · <backend>Name: text".
async function chatRows(page) {
  return page.locator('#room-log li[data-type="chat.message"]').allTextContents();
}
const rowsOf = (msgs) => msgs.map((m) => `${m.id} \u00b7 ${m.serverId}${m.name}: ${m.text}`);

async function awaitChatCount(page, n) {
  await page.waitForFunction((k) => window.ssegateRoom.lines.filter((l) => l.type === 'chat.message')
    .length >= k, n, { timeout: T });
}

function assertNoIdTwice(lines, who) {
  const ids = lines.map((l) => l.id);
  assert.equal(new Set(ids).size, ids.length, `${who}: no event twice (${ids.join(' ')})`);
}

// The room's chat.message ids in Redis, oldest first: the ground truth.
function roomHistory() {
  const out = c.redisCli('XRANGE', `ssegate:history:topic:${ROOM}`, '-', '+');
  const lines = out ? out.split('\n') : [];
  const ids = [];
  for (let i = 0; i < lines.length; i += 5) if (lines[i + 2] === 'chat.message') ids.push(lines[i]);
  return ids;
}

test('room view: two pages on two backends chat; one loses its backend, resumes, both end with every message once', async (t) => {
  // Ada's page first: where does its stream live?
  const ada = await openRoomPage('Ada');
  await waitFor(async () => Object.values(await streamCounts()).reduce((a, b) => a + b) === 1, T,
                "Ada's stream counted");
  const adaHome = (await c.streamsOn('backend-1')) === 1 ? 'backend-1' : 'backend-2';
  const graceHome = otherThan(adaHome);

  // Grace's page must stream from the other backend. nginx balances each
  // request round-robin, so leave and rejoin (same account) until it does;
  // an extra request in between shifts the rotation.
  const grace = await openRoomPage('Grace');
  for (let attempt = 1; ; attempt++) {
    await waitFor(async () => Object.values(await streamCounts()).reduce((a, b) => a + b) === 2, T,
                  "Grace's stream counted");
    if ((await c.streamsOn(graceHome)) === 1) {
      t.diagnostic(`Grace's page streams from ${graceHome} after ${attempt} open(s)`);
      break;
    }
    assert.ok(attempt < 12, 'nginx kept putting both pages on one backend');
    await grace.click('#room-leave');
    await awaitCounts({ [adaHome]: 1, [graceHome]: 0 });
    await grace.evaluate(() => fetch('/health').then((r) => r.text()));
    await grace.click('#room-join');
    await awaitRoomState(grace, 'open');
  }
  await awaitCounts({ [adaHome]: 1, [graceHome]: 1 });
  const adaId = await ada.evaluate(() => window.ssegateRoom.userId);
  const graceId = await grace.evaluate(() => window.ssegateRoom.userId);
  assert.match(adaId, /^[1-9][0-9]*$/);
  assert.match(graceId, /^[1-9][0-9]*$/);
  assert.notEqual(adaId, graceId);

  // Each page writes through the backend the other page streams from.
  posts.set(ada, graceHome);
  posts.set(grace, adaHome);
  const want = [];
  want.push(await send(ada, 'Hello from Ada', graceHome));
  want.push(await send(grace, 'Hi Ada, Grace here', adaHome));
  want.push(await send(ada, 'Two backends, one room', graceHome));
  for (const page of [ada, grace]) await awaitChatCount(page, want.length);
  assert.deepEqual(await chatLines(ada), want, "Ada's page: every message, in order, with its backend");
  assert.deepEqual(await chatLines(grace), want, "Grace's page: every message, in order, with its backend");
  assert.deepEqual(await chatRows(ada), rowsOf(want), "Ada's page shows them, each with its backend");

  // Presence: both users are in the room while both are connected.
  // [presence] these assertions need GET /presence and PRESENCE_EVENTS.
  const both = [adaId, graceId].sort();
  await waitFor(async () => {
    const r = await http(c.nginxPort, 'GET', `/presence?topic=${ROOM}`);
    return r.status === 200 && JSON.stringify([...r.body.users].sort()) === JSON.stringify(both);
  }, T, 'GET /presence to list both users');
  for (const page of [ada, grace]) {
    await page.waitForFunction(() => JSON.stringify([...window.ssegateRoom.members].sort()) ===
                               JSON.stringify(['Ada', 'Grace']), null, { timeout: T });
    assert.deepEqual((await page.locator('#room-members li').allTextContents()).sort(), ['Ada', 'Grace']);
    await page.waitForFunction((ids) => ids.every((id) => window.ssegateRoom.lines.some(
      (l) => l.type === 'presence.join' && l.userId === id)), both, { timeout: T });
    await page.waitForFunction(() => /Grace joined/.test(document.querySelector('#room-log').textContent),
                               null, { timeout: T });
  }
  // [/presence]

  await ada.screenshot({ path: path.join(ARTIFACTS, 'e2e-room-ada.png'), fullPage: true });
  await grace.screenshot({ path: path.join(ARTIFACTS, 'e2e-room-grace.png'), fullPage: true });

  // Kill Ada's backend. Her page's reconnect is held until Grace has
  // written, so it must resume what it missed from Last-Event-ID.
  const lastSeen = await ada.evaluate(() => window.ssegateRoom.lastId);
  // The headers Chromium puts on the wire (Playwright's request objects
  // show an intercepted request's headers before Last-Event-ID is added).
  const sent = [];
  const cdp = await ada.context().newCDPSession(ada);
  cdp.on('Network.requestWillBeSentExtraInfo', (e) => sent.push(e.headers));
  await cdp.send('Network.enable');
  let held = 0, release;
  const gate = new Promise((r) => { release = r; });
  await ada.route((u) => u.pathname === '/events/sse', async (route) => {
    held += 1;
    await gate;
    return route.continue();
  });
  await c.backends[adaHome].proc.stop('SIGKILL');
  await ada.waitForFunction(() => document.querySelector('#room-state').textContent !== 'open',
                            null, { timeout: T });
  await waitFor(() => held >= 1, T, "Ada's page to try to reconnect");
  // One backend left: both pages write through nginx, which sends to it.
  posts.set(ada, null);
  posts.set(grace, null);
  want.push(await send(grace, 'Ada, are you there?', graceHome));
  want.push(await send(ada, 'Back in a moment', graceHome));
  want.push(await send(grace, 'Still here', graceHome));
  await awaitChatCount(grace, want.length);
  assert.equal((await chatLines(ada)).length, 3, "Ada's page has seen nothing while cut off");
  release();
  await awaitRoomState(ada, 'open');
  const header = (h, name) => Object.entries(h).find(([k]) => k.toLowerCase() === name)?.[1];
  const resumes = sent.filter((h) => header(h, 'accept') === 'text/event-stream');
  assert.equal(resumes.length, 1, 'one reconnect');
  assert.equal(header(resumes[0], 'last-event-id'), lastSeen,
               'the reconnect carries Last-Event-ID: the last event the page saw');
  await awaitChatCount(ada, want.length);
  await waitFor(async () => (await c.streamsOn(graceHome)) === 2, T, 'both pages to stream from the survivor');
  want.push(await send(grace, 'Welcome back', graceHome));
  want.push(await send(ada, 'Nothing lost', graceHome));
  for (const page of [ada, grace]) await awaitChatCount(page, want.length);

  const ids = want.map((m) => m.id);
  const key = (id) => id.split('-').map(BigInt);
  const before = (a, b) => key(a)[0] < key(b)[0] || (key(a)[0] === key(b)[0] && key(a)[1] < key(b)[1]);
  assert.ok(ids.every((id, i) => i === 0 || before(ids[i - 1], id)),
            `ids increase in the order the messages were sent: ${ids.join(' ')}`);
  assert.deepEqual(roomHistory(), ids, 'the room history holds exactly these messages');
  assert.deepEqual(await chatLines(ada), want, "Ada's page: every message once, in order, after the kill");
  assert.deepEqual(await chatLines(grace), want, "Grace's page: every message once, in order");
  assert.deepEqual(await chatRows(ada), rowsOf(want), "Ada's page shows them");
  assert.deepEqual(await chatRows(grace), rowsOf(want), "Grace's page shows them");
  for (const [page, who] of [[ada, 'Ada'], [grace, 'Grace']]) {
    assertNoIdTwice(await page.evaluate(() => window.ssegateRoom.lines), who);
  }
  assert.ok(Number(await ada.textContent('#room-reconnects')) >= 1, "Ada's page shows a reconnect");
  assert.equal(await roomState(grace), 'open');

  // [presence] both users are still in the room after the move.
  for (const page of [ada, grace]) {
    await page.waitForFunction(() => JSON.stringify([...window.ssegateRoom.members].sort()) ===
                               JSON.stringify(['Ada', 'Grace']), null, { timeout: T });
  }
  // [/presence]
  await ada.screenshot({ path: path.join(ARTIFACTS, 'e2e-room-after-kill-ada.png'), fullPage: true });
  await grace.screenshot({ path: path.join(ARTIFACTS, 'e2e-room-after-kill-grace.png'), fullPage: true });

  const phone = await openRoomPage('Linus', { width: 390, height: 844 });
  await awaitChatCount(phone, want.length);
  assert.deepEqual(await chatLines(phone), want, 'a page joining later gets the room history');
  await phone.screenshot({ path: path.join(ARTIFACTS, 'e2e-room-phone.png'), fullPage: true });

  for (const [page, who] of [[ada, 'Ada'], [grace, 'Grace'], [phone, 'Linus']]) {
    assert.deepEqual(page.errors, [], `no page errors on ${who}'s page`);
  }
  await c.startBackend(adaHome);
});

test('every process of the topology stops cleanly, with no sanitizer report', () => c.assertCleanStop());
