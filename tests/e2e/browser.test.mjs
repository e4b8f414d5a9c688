// browser.test.mjs -- the demo page in headless Chromium (Debian's
// chromium, driven by playwright-core) through nginx: the page streams from
// one backend while snapshots are written through the other; then the
// page's backend is killed and the page resumes on the survivor with every
// event exactly once. Screenshots are kept as test artifacts.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS, launchChromium } from './chromium.mjs';
import { Cluster, http, waitFor } from './cluster.mjs';

let c, browser;

before(async () => {
  c = await new Cluster().start();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (c) await c.stop();
});

// The ids of the rows on the page, oldest first.
async function pageIds(page) {
  return page.evaluate(() => window.ssegate.events.map((e) => e.id));
}

test('demo page: stream on one backend, writes through the other, survives losing its backend', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(c.url('/'));
  assert.equal(await page.title(), 'ssegate live demo');
  await page.fill('#name', 'Grace Hopper');
  await page.fill('#balance', '100000');
  await page.click('#create');
  await page.waitForFunction(() => document.querySelector('#state').textContent === 'open', null, { timeout: 10000 });
  const id = (await page.textContent('#account-id')).trim();
  assert.match(id, /^[1-9][0-9]*$/);
  await page.waitForFunction(() => window.ssegate.events.length >= 2, null, { timeout: 10000 });
  const types = await page.evaluate(() => window.ssegate.events.map((e) => e.type));
  assert.deepEqual(types, ['account.created', 'snapshot'], 'account creation events replayed on the page');

  // Which backend holds the page's stream? Write through the other one.
  const holder = (await c.streamsOn('backend-1')) === 1 ? 'backend-1' : 'backend-2';
  const other = holder === 'backend-1' ? 'backend-2' : 'backend-1';
  assert.equal(await c.streamsOn(holder), 1, `the page streams from ${holder}`);
  for (const balance of [120000, 130000, 140000]) {
    const r = await http(c.backends[other].port, 'POST', `/accounts/${id}/snapshots`, { balance });
    assert.equal(r.status, 201);
  }
  await page.waitForFunction(() => window.ssegate.events.length >= 5, null, { timeout: 10000 });
  const rows = await page.evaluate(() => window.ssegate.events.slice(2));
  assert.deepEqual(rows.map((e) => [e.type, e.serverId, e.data.balance]),
                   [['snapshot', other, 120000], ['snapshot', other, 130000], ['snapshot', other, 140000]],
                   'snapshots written through the other backend appear on the page');
  assert.equal(await page.locator('#events tbody tr').count(), 5, 'five rows in the table');
  await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-demo-page.png'), fullPage: true });

  // Kill the page's backend: EventSource reconnects through nginx to the
  // survivor with Last-Event-ID and misses nothing.
  await c.backends[holder].proc.stop('SIGKILL');
  for (const balance of [150000, 160000]) {
    const r = await http(c.backends[other].port, 'POST', `/accounts/${id}/snapshots`, { balance });
    assert.equal(r.status, 201);
  }
  await page.waitForFunction(() => window.ssegate.events.length >= 7, null, { timeout: 15000 });
  await waitFor(async () => (await page.textContent('#state')) === 'open', 10000, 'the page to reconnect');
  const want = c.history(id).map((e) => e.id);
  assert.equal(want.length, 7);
  assert.deepEqual(await pageIds(page), want, 'every event exactly once, in order, after the kill');
  assert.ok(Number(await page.textContent('#reconnects')) >= 1, 'the page shows a reconnect');
  await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-demo-after-kill.png'), fullPage: true });

  const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await phone.goto(c.url('/'));
  await phone.fill('#use-id', id);
  await phone.click('#use');
  await phone.waitForFunction(() => document.querySelector('#state').textContent === 'open', null, { timeout: 10000 });
  await phone.screenshot({ path: path.join(ARTIFACTS, 'e2e-demo-phone.png'), fullPage: true });
  assert.deepEqual(consoleErrors, [], 'no page errors');
  await c.startBackend(holder);
});

// A refusal meant to be final (404 for an unknown user; 401/403 in secure
// mode) closes an EventSource for good (WHATWG 9.2.2): the page shows it
// closed and opens again only when the user asks, never by itself.
test('demo page: a final refusal stays closed until the user asks again', async () => {
  const page = await browser.newPage();
  const opens = [];
  page.on('request', (r) => { if (r.url().includes('/events/sse')) opens.push(r.url()); });
  await page.goto(c.url('/'));
  await page.fill('#use-id', '987654321');
  await page.click('#use');
  await page.waitForFunction(() => document.querySelector('#state').textContent === 'closed', null, { timeout: 10000 });
  assert.equal(opens.length, 1, 'one stream request for the unknown user');
  // An absence cannot be awaited: watch ten of the cluster's retry
  // intervals (SSE_RETRY_MS 300), where a reconnect would have happened.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  assert.equal(opens.length, 1, 'no reconnect by itself after the 404');
  assert.equal(await page.textContent('#state'), 'closed');

  const acct = await http(c.backends['backend-1'].port, 'POST', '/accounts', { name: 'Ada' });
  assert.equal(acct.status, 201);
  await page.fill('#use-id', String(acct.body.id));
  await page.click('#use');
  await page.waitForFunction(() => document.querySelector('#state').textContent === 'open', null, { timeout: 10000 });
  assert.equal(opens.length, 2, 'the user asked: one more stream request');
  await page.close();
});

test('every process of the topology stops cleanly, with no sanitizer report', () => c.assertCleanStop());
