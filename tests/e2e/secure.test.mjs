// secure.test.mjs -- the demo page in secure mode, in headless Chromium
// through nginx: both backends run with AUTH_SECRET and a publish key (as
// `scripts/cluster --secure` starts them). The page needs the key to
// write, asks for a short-lived stream token (POST /tokens), and when the
// token expires on its open stream (event token-expired) it gets a fresh
// one and reopens after the last event it saw: every event exactly once.
// Without the key the page is refused, and so is a stream without a token.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ARTIFACTS, launchChromium } from './chromium.mjs';
import { Cluster, http, waitFor } from './cluster.mjs';

const SECRET = 'e2e-secret-0123456789abcdef0123456789abcdef';
const KEY = 'e2e-publish-key-0123456789';
const WRITE = { Authorization: `Bearer ${KEY}` };
const TTL_SECS = 3;
let c, browser;

before(async () => {
  c = await new Cluster({ env: { AUTH_SECRET: SECRET, PUBLISH_KEYS: KEY } }).start();
  browser = await launchChromium();
});

after(async () => {
  if (browser) await browser.close();
  if (c) await c.stop();
});

async function pageIds(page) {
  return page.evaluate(() => window.ssegate.events.map((e) => e.id));
}

test('secure mode: refused without the key or a token', async () => {
  const r = await http(c.nginxPort, 'POST', '/accounts', { name: 'Eve' });
  assert.equal(r.status, 401);
  assert.equal(r.body.error, 'unauthorized');
  const s = await http(c.nginxPort, 'GET', '/events/sse?userId=1');
  assert.equal(s.status, 401, 'a stream without a token');
  assert.equal(s.headers.get('www-authenticate'), 'Bearer realm="ssegate"');
  assert.equal(c.redisCli('EXISTS', 'ssegate:account:1'), '0', 'nothing written');

  const page = await browser.newPage();
  await page.goto(c.url('/'));
  await page.click('#create');
  await waitFor(async () => /401|publish key/.test(await page.textContent('#message')), 10000,
                'the page to say it was refused');
  await page.close();
});

test('secure mode demo page: token renewed on expiry, resumed without loss', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(c.url('/'));
  await page.fill('#publish-key', KEY);
  await page.fill('#token-ttl', String(TTL_SECS));
  await page.fill('#name', 'Ada Secure');
  await page.click('#create');
  await page.waitForFunction(() => document.querySelector('#state').textContent === 'open', null, { timeout: 10000 });
  const id = (await page.textContent('#account-id')).trim();
  assert.match(id, /^[1-9][0-9]*$/);
  await page.waitForFunction(() => window.ssegate.events.length >= 2, null, { timeout: 10000 });
  const tokensAtStart = await page.evaluate(() => window.ssegate.tokens);
  assert.equal(tokensAtStart, 1, 'one token for the first open');

  // Snapshots written with the key while the token runs out: the stream
  // ends with token-expired, the page gets a fresh token and reopens
  // after the last id it saw.
  const writer = Object.values(c.backends)[0];
  const expiresBy = Date.now() + TTL_SECS * 1000;
  let balance = 100;
  while (Date.now() < expiresBy + 1500) {
    const r = await http(writer.port, 'POST', `/accounts/${id}/snapshots`, { balance: balance++ }, WRITE);
    assert.equal(r.status, 201);
    await new Promise((res) => setTimeout(res, 150));  // pacing the writes, not a wait for a condition
  }
  await page.waitForFunction(() => window.ssegate.tokens >= 2, null, { timeout: 10000 });
  await page.waitForFunction(() => document.querySelector('#state').textContent === 'open', null, { timeout: 10000 });
  for (let i = 0; i < 3; i++) {
    const r = await http(writer.port, 'POST', `/accounts/${id}/snapshots`, { balance: balance++ }, WRITE);
    assert.equal(r.status, 201);
  }
  const want = c.history(id).map((e) => e.id);
  await waitFor(async () => (await pageIds(page)).length >= want.length, 15000,
                `the page to show all ${want.length} events`);
  assert.deepEqual(await pageIds(page), want, 'every event exactly once, in order, across the renewal');
  const url = await page.textContent('#stream-url');
  assert.ok(!url.includes(SECRET) && /token=…/.test(url), 'the page never shows the token');
  await page.screenshot({ path: path.join(ARTIFACTS, 'e2e-demo-secure.png'), fullPage: true });
  assert.deepEqual(pageErrors, [], 'no page errors');
  const logs = Object.values(c.backends).map((b) => b.proc.output()).join('');
  assert.ok(!logs.includes(KEY) && !logs.includes(SECRET), 'no secret in the logs');
  assert.match(logs, /closed: token_expired/, 'a stream ended at its token\'s exp');
});

test('every process of the topology stops cleanly, with no sanitizer report', () => c.assertCleanStop());
