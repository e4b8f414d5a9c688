// topology.test.mjs -- nginx in front of backend-1 and backend-2 on one
// Redis: delivery through the proxy, and no event lost or duplicated when a
// backend is killed, Redis restarts, or nginx reloads or restarts. Clients
// are real EventSource implementations (the eventsource package).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { EventSource } from 'eventsource';
import { Cluster, http, sleep, waitFor } from './cluster.mjs';

let c;

before(async () => { c = await new Cluster().start(); });
after(async () => { if (c) await c.stop(); });

// An EventSource client that records every event of the given types.
function client(url, types) {
  const es = new EventSource(url);
  const rec = { es, events: [], opens: 0, errors: 0 };
  es.onopen = () => { rec.opens += 1; };
  es.onerror = () => { rec.errors += 1; };
  for (const t of types) es.addEventListener(t, (e) => rec.events.push({ id: e.lastEventId, type: e.type }));
  return rec;
}

async function account(port, name = 'e2e') {
  const r = await http(port, 'POST', '/accounts', { name });
  assert.equal(r.status, 201);
  return r.body.id;
}

// POST /events through nginx; retries a 502/503 (a backend just died):
// whatever happens, Redis history is the ground truth for what to expect.
async function post(port, userId, type, tries = 20) {
  for (let i = 0; ; i++) {
    try {
      const r = await http(port, 'POST', '/events', { userId, type, data: { i } });
      if (r.status === 202) return r.body.id;
      if (i >= tries || ![502, 503, 504].includes(r.status)) assert.fail(`POST /events: ${r.status} ${JSON.stringify(r.body)}`);
    } catch (e) {
      if (i >= tries) throw e;
    }
    await sleep(100);
  }
}

function assertExactly(rec, want, what) {
  assert.deepEqual(rec.events.map((e) => e.id), want.map((e) => e.id), `${what}: every event exactly once, in order`);
}

async function awaitAll(recs, wantFor, ms, what) {
  await waitFor(() => recs.every((r) => r.events.length >= wantFor(r).length), ms, what).catch((e) => {
    const short = recs.filter((r) => r.events.length < wantFor(r).length).map((r) => `${r.events.length}/${wantFor(r).length}`);
    throw new Error(`${e.message}; short streams: ${short.slice(0, 10).join(', ')}`);
  });
  await sleep(200);   // anything extra (a duplicate) would arrive now
}

test('100 streams over both backends receive exactly their 1,000 events through nginx', async () => {
  const users = [];
  for (let i = 0; i < 50; i++) users.push(await account(c.nginxPort, `u${i}`));
  const recs = [];
  for (let i = 0; i < 100; i++) {
    const r = client(c.url(`/events/sse?userId=${users[i % 50]}`), ['e']);
    r.user = users[i % 50];
    recs.push(r);
  }
  await waitFor(() => recs.every((r) => r.opens === 1), 15000, '100 streams open');
  const on1 = await c.streamsOn('backend-1'), on2 = await c.streamsOn('backend-2');
  assert.equal(on1 + on2, 100, 'all 100 streams held by the backends');
  assert.ok(on1 >= 20 && on2 >= 20, `streams spread over both backends (${on1} + ${on2})`);
  // 1,000 events, 10 publishers at a time, through nginx.
  let n = 0;
  await Promise.all(Array.from({ length: 10 }, async () => {
    while (n < 1000) {
      const k = n++;
      await post(c.nginxPort, users[k % 50], 'e');
    }
  }));
  const want = new Map(users.map((u) => [u, c.history(u).filter((e) => e.type === 'e')]));
  for (const u of users) assert.equal(want.get(u).length, 20, `20 events for user ${u}`);
  await awaitAll(recs, (r) => want.get(r.user), 20000, '1,000 events on 100 streams');
  for (const r of recs) assertExactly(r, want.get(r.user), `user ${r.user}`);
  const delivered = recs.reduce((s, r) => s + r.events.length, 0);
  assert.equal(delivered, 2000, '100% delivery: 2,000 deliveries of 1,000 events');
  for (const r of recs) r.es.close();
});

test('SIGKILL of a backend under load: clients resume through nginx with nothing lost', async () => {
  const users = [];
  for (let i = 0; i < 10; i++) users.push(await account(c.nginxPort, `k${i}`));
  const recs = [];
  for (let i = 0; i < 20; i++) {
    const r = client(c.url(`/events/sse?userId=${users[i % 10]}`), ['k']);
    r.user = users[i % 10];
    recs.push(r);
  }
  await waitFor(() => recs.every((r) => r.opens === 1), 15000, '20 streams open');
  assert.ok(await c.streamsOn('backend-1') > 0, 'some streams on backend-1');
  let stop = false, sent = 0;
  const publisher = (async () => {
    while (!stop) {
      await post(c.nginxPort, users[sent % 10], 'k');
      sent++;
      await sleep(5);
    }
  })();
  await waitFor(() => sent >= 100, 20000, '100 events before the kill');
  const victim = c.backends['backend-1'].proc;
  await victim.stop('SIGKILL');
  await waitFor(() => sent >= 300, 30000, '200 more events after the kill');
  stop = true;
  await publisher;
  const want = new Map(users.map((u) => [u, c.history(u).filter((e) => e.type === 'k')]));
  await awaitAll(recs, (r) => want.get(r.user), 20000, 'every event after the kill');
  for (const r of recs) assertExactly(r, want.get(r.user), `user ${r.user}`);
  assert.ok(recs.some((r) => r.opens >= 2), 'the killed backend\'s clients reconnected');
  assert.equal(await c.streamsOn('backend-2'), 20, 'all streams now on backend-2');
  for (const r of recs) r.es.close();
  await c.startBackend('backend-1');
});

test('Redis restart: every event accepted before and after is delivered exactly once', async () => {
  const u = await account(c.nginxPort, 'redis-restart');
  const recs = [0, 1, 2, 3].map(() => Object.assign(client(c.url(`/events/sse?userId=${u}`), ['r']), { user: u }));
  await waitFor(() => recs.every((r) => r.opens === 1), 15000, 'streams open');
  for (let i = 0; i < 5; i++) await post(c.nginxPort, u, 'r');
  await c.redis.stop('SIGTERM');
  await waitFor(async () => (await http(c.b1Port, 'GET', '/health')).status === 503, 10000, 'backend-1 sees Redis down');
  const down = await http(c.nginxPort, 'POST', '/events', { userId: u, type: 'r' });
  assert.equal(down.status, 503, 'writes refused while Redis is down');
  await c.startRedis();
  for (let i = 0; i < 5; i++) await post(c.nginxPort, u, 'r');
  const want = c.history(u).filter((e) => e.type === 'r');
  assert.equal(want.length, 10);
  await awaitAll(recs, () => want, 20000, 'ten events on every stream');
  for (const r of recs) assertExactly(r, want, 'after the Redis restart');
  for (const r of recs) r.es.close();
});

test('nginx reload keeps streams; a full nginx restart loses nothing', async () => {
  const u = await account(c.nginxPort, 'nginx');
  const recs = [0, 1, 2, 3].map(() => Object.assign(client(c.url(`/events/sse?userId=${u}`), ['n']), { user: u }));
  await waitFor(() => recs.every((r) => r.opens === 1), 15000, 'streams open');
  for (let i = 0; i < 3; i++) await post(c.nginxPort, u, 'n');
  process.kill(c.nginx.pid, 'SIGHUP');              // nginx -s reload
  await sleep(500);
  for (let i = 0; i < 3; i++) await post(c.nginxPort, u, 'n');
  let want = c.history(u).filter((e) => e.type === 'n');
  await awaitAll(recs, () => want, 10000, 'events across the reload');
  for (const r of recs) assertExactly(r, want, 'across nginx reload');
  assert.ok(recs.every((r) => r.opens === 1), 'reload kept every stream open');
  await c.nginx.stop('SIGTERM');
  for (let i = 0; i < 3; i++) await post(c.b1Port, u, 'n');   // while nginx is down
  await c.startNginx();
  for (let i = 0; i < 3; i++) await post(c.nginxPort, u, 'n');
  want = c.history(u).filter((e) => e.type === 'n');
  assert.equal(want.length, 12);
  await awaitAll(recs, () => want, 20000, 'events across the restart');
  for (const r of recs) assertExactly(r, want, 'across nginx restart');
  assert.ok(recs.every((r) => r.opens >= 2), 'clients reconnected after the restart');
  for (const r of recs) r.es.close();
});

test('every process of the topology stops cleanly, with no sanitizer report', () => c.assertCleanStop());
