// restart.test.mjs -- rolling restarts behind nginx: 500 EventSource
// clients (the eventsource package) through nginx, 200 events/s posted
// through nginx, backend-1 restarted (stopped, then started again), then
// backend-2. With SIGTERM (DRAIN_SECS=2): every event that got a 2xx
// reaches every client of its user exactly once, in order, no POST gets a
// 5xx from nginx, and no client ever sees a non-200. With SIGKILL: no
// event that got a 2xx is lost either (clients resume by Last-Event-ID);
// POSTs in flight on the killed backend may get a 502.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { EventSource } from 'eventsource';
import { Cluster, http, sleep, waitFor } from './cluster.mjs';

const CLIENTS = 500;
const USERS = 50;
const RATE = 200;                  // events/s, all users together
const POSTERS = 20;

let c;

before(async () => {
  // Every client comes from 127.0.0.1 here: no per-client cap.
  c = await new Cluster({ env: { DRAIN_SECS: '2', SHUTDOWN_GRACE_SECS: '10',
                                 MAX_CONNECTIONS_PER_CLIENT: '0' } }).start();
});
after(async () => { if (c) await c.assertCleanStop(); });

function client(url) {
  const es = new EventSource(url);
  const rec = { es, ids: [], opens: 0, statuses: [] };
  es.onopen = () => { rec.opens += 1; };
  // A non-200 answer is an error with its status in code (and ends the
  // EventSource for good); a stream that ended is an error without one.
  es.onerror = (e) => { if (e.code !== undefined) rec.statuses.push(e.code); };
  es.addEventListener('r', (e) => rec.ids.push(e.lastEventId));
  return rec;
}

// Posts RATE events/s through nginx until stop() is called; records the
// ids that got a 2xx and every other status.
function publish(users) {
  const ok = new Map(users.map((u) => [u, []]));
  const bad = [];
  let running = true, n = 0;
  const t0 = Date.now();
  const done = Promise.all(Array.from({ length: POSTERS }, async () => {
    while (running) {
      const k = n++;
      const due = t0 + (k * 1000) / RATE;
      if (due > Date.now()) await sleep(due - Date.now());
      const u = users[k % users.length];
      try {
        const r = await http(c.nginxPort, 'POST', '/events', { userId: u, type: 'r', data: { k } });
        if (r.status === 202) ok.get(u).push(r.body.id);
        else bad.push(r.status);
      } catch (e) {
        bad.push(String(e));
      }
    }
  }));
  return { ok, bad, count: () => n, stop: async () => { running = false; await done; } };
}

// nginx sends nothing to a backend for fail_timeout (2 s) after a failure:
// wait until it serves both again, or the clients would all go to one.
async function bothInRotation() {
  for (const name of ['backend-1', 'backend-2']) await c.nginxRoutesTo(name);
}

async function rollingRestart(sig) {
  await bothInRotation();
  const users = [];
  for (let i = 0; i < USERS; i++) {
    const r = await http(c.nginxPort, 'POST', '/accounts', { name: `r${i}` });
    assert.equal(r.status, 201);
    users.push(r.body.id);
  }
  const recs = [];
  for (let i = 0; i < CLIENTS; i++) {
    const r = client(c.url(`/events/sse?userId=${users[i % USERS]}`));
    r.user = users[i % USERS];
    recs.push(r);
  }
  try {
    return await rollingRestartWith(sig, users, recs);
  } finally {
    for (const r of recs) r.es.close();
  }
}

async function rollingRestartWith(sig, users, recs) {
  await waitFor(() => recs.every((r) => r.opens === 1), 30000, `${CLIENTS} streams open`);
  const before1 = await c.streamsOn('backend-1');
  assert.ok(before1 > 50 && before1 < CLIENTS - 50, `streams on both backends (${before1} on backend-1)`);
  const pub = publish(users);
  await sleep(1500);
  const t1 = Date.now();
  const x1 = await c.restartBackend('backend-1', sig);
  const took1 = Date.now() - t1;
  // As an operator does: the next backend only once this one is back in
  // rotation (nginx rests a failed backend for fail_timeout).
  await bothInRotation();
  await sleep(1000);
  const t2 = Date.now();
  const x2 = await c.restartBackend('backend-2', sig);
  const took2 = Date.now() - t2;
  await bothInRotation();
  await sleep(1000);
  await pub.stop();
  if (sig === 'SIGTERM') {
    assert.deepEqual([x1, x2], [{ code: 0, sig: null }, { code: 0, sig: null }], 'both exited 0');
  }
  // Every 2xx event is in history; history is what each client must have.
  const want = new Map(users.map((u) => [u, c.history(u).filter((e) => e.type === 'r').map((e) => e.id)]));
  for (const u of users) {
    const hist = new Set(want.get(u));
    for (const id of pub.ok.get(u)) assert.ok(hist.has(id), `a 2xx event ${id} is in history`);
  }
  await waitFor(() => recs.every((r) => r.ids.length >= want.get(r.user).length), 30000,
                'every client caught up').catch((e) => {
    const short = recs.filter((r) => r.ids.length < want.get(r.user).length)
      .map((r) => `${r.ids.length}/${want.get(r.user).length}`);
    const r = recs.find((x) => x.ids.length < want.get(x.user).length);
    const missing = want.get(r.user).filter((id) => !r.ids.includes(id));
    throw new Error(`${e.message}: ${short.length} short, e.g. ${short.slice(0, 5).join(', ')};` +
                    ` one (user ${r.user}, ${r.opens} opens, statuses ${JSON.stringify(r.statuses)}, readyState ${r.es.readyState}) misses ${missing.join(' ')}, last got ${r.ids.slice(-2).join(' ')}`);
  });
  await sleep(300);                // a duplicate would arrive now
  let wrong = 0;
  for (const r of recs) {
    try { assert.deepEqual(r.ids, want.get(r.user)); } catch (e) { wrong++; }
  }
  assert.equal(wrong, 0, `${wrong} clients without exactly their events, in order`);
  const statuses = recs.flatMap((r) => r.statuses);
  assert.deepEqual(statuses, [], 'no client saw a non-200');
  const reconnects = recs.reduce((a, r) => a + r.opens - 1, 0);
  const posted = pub.count();
  const okCount = [...pub.ok.values()].reduce((a, v) => a + v.length, 0);
  console.log(`# ${sig}: ${posted} POSTs (${okCount} 2xx, others ${JSON.stringify(pub.bad.slice(0, 10))}),` +
              ` ${reconnects} reconnects, restarts took ${took1} and ${took2} ms`);
  return pub.bad;
}

test('rolling restart with SIGTERM: exactly once, no 5xx, no non-200', async () => {
  const bad = await rollingRestart('SIGTERM');
  assert.deepEqual(bad, [], 'no POST got anything but a 2xx');
});

test('rolling restart with SIGKILL: no 2xx event lost', async () => {
  const bad = await rollingRestart('SIGKILL');
  assert.ok(bad.every((b) => b === 502 || b === 504), `only 502/504 from nginx: ${JSON.stringify(bad.slice(0, 10))}`);
});
