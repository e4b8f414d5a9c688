// clients.test.mjs -- the two lenient npm SSE clients, @microsoft/fetch-event-source
// and extended-eventsource, through nginx in front of backend-1 and
// backend-2. Both dispatch a blank line as a message even when no data:
// line preceded it (a strict WHATWG EventSource does not), so a hello or a
// heartbeat comment ending with a blank line became a message with data ""
// and broke every JSON.parse(e.data). Each test checks, for one library, that over idle
// heartbeat periods and across a SIGKILL of the backend holding the stream
// it dispatches exactly the events posted, each once, in order, with their
// ids and data, and nothing else.
//
// Both libraries run in Node 20 itself (global fetch, ReadableStream,
// EventTarget, MessageEvent). Each is given a fetch (an option both offer)
// that is the global fetch plus a tap on the response body, so the test also
// sees the bytes the library parsed: the hello naming the backend, the
// heartbeats, and the Last-Event-ID the library sent.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { fetchEventSource } from '@microsoft/fetch-event-source';
import { EventSource as ExtendedEventSource } from 'extended-eventsource';
import { Cluster, http, sleep, waitFor } from './cluster.mjs';

// @microsoft/fetch-event-source 2.0.1 is written for browsers. Even with
// openWhenHidden: true (no visibilitychange listener is added) it calls
// window.setTimeout/clearTimeout to schedule a reconnect and
// document.removeEventListener() when it stops; without these globals the
// first dropped stream throws a ReferenceError out of the library instead
// of reconnecting. (window.fetch is not needed: we pass the fetch option.)
// These are the smallest shims; extended-eventsource needs none.
globalThis.window ??= { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) };
globalThis.document ??= { removeEventListener() {} };

// retry: sent in the hello. Neither library's default (fetch-event-source
// 1000 ms, extended-eventsource 5000 ms) is near it, so the reconnect delay
// shows whether the library honoured the server's retry: field.
const RETRY_MS = 1500;
const TYPE = 'clients.e2e';
let c;

before(async () => { c = await new Cluster({ env: { HEARTBEAT_SECS: '1', SSE_RETRY_MS: String(RETRY_MS) } }).start(); });
after(async () => { if (c) await c.stop(); });

function newRecord() {
  // msgs: every message the library dispatched; conns: every request it
  // made, with the Last-Event-ID it sent and the bytes it got back.
  return { msgs: [], conns: [], opens: 0, errors: [], closes: 0, retries: [], log: [] };
}

// The global fetch, recording each request's Last-Event-ID and a copy of
// the response body as it is handed to the library.
function tappedFetch(rec) {
  return async (input, init) => {
    const req = new Request(input, init);
    const conn = { at: Date.now(), lastEventId: req.headers.get('last-event-id'), status: null, text: '' };
    rec.conns.push(conn);
    const res = await fetch(req);
    conn.status = res.status;
    if (!res.body) return res;
    const dec = new TextDecoder();
    const body = res.body.pipeThrough(new TransformStream({
      transform(chunk, ctl) { conn.text += dec.decode(chunk, { stream: true }); ctl.enqueue(chunk); },
    }));
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

const LIBS = {
  '@microsoft/fetch-event-source': (url) => {
    const rec = newRecord();
    const ctl = new AbortController();
    rec.close = () => ctl.abort();
    rec.done = fetchEventSource(url, {
      signal: ctl.signal,
      openWhenHidden: true,
      fetch: tappedFetch(rec),
      async onopen(res) {
        rec.opens += 1;
        const type = res.headers.get('content-type') || '';
        if (res.status !== 200 || !type.startsWith('text/event-stream')) throw new Error(`stream answered ${res.status} ${type}`);
      },
      onmessage(m) {
        if (m.retry !== undefined) rec.retries.push(m.retry);
        rec.msgs.push({ id: m.id, event: m.event || 'message', data: m.data });
      },
      // The library resolves (and never reconnects) when a stream ends
      // cleanly; its README has onclose throw to retry. Counted apart
      // from errors, so the report can say how the stream ended.
      onclose() { rec.closes += 1; throw new Error('the server ended the stream'); },
      // Returning nothing: retry after the interval the server's retry: set.
      onerror(err) { rec.errors.push({ at: Date.now(), what: String(err) }); },
    }).catch((e) => { rec.log.push(`rejected: ${e}`); });
    return rec;
  },

  'extended-eventsource': (url) => {
    const rec = newRecord();
    const log = (lvl) => (...a) => rec.log.push(`${lvl}: ${a.map(String).join(' ')}`);
    const es = new ExtendedEventSource(url, {
      fetch: tappedFetch(rec),
      logger: { trace() {}, debug() {}, info() {}, warn: log('warn'), error: log('error') },
    });
    // Every message, whatever its type ("message" for one without an
    // event: field, as an empty one would be): the library dispatches each
    // through this.dispatchEvent, asynchronously after the fetch, so this
    // sees all of them.
    es.dispatchEvent = (ev) => {
      if (ev instanceof MessageEvent) rec.msgs.push({ id: ev.lastEventId, event: ev.type, data: ev.data });
      return EventTarget.prototype.dispatchEvent.call(es, ev);
    };
    es.onopen = () => { rec.opens += 1; };
    es.onerror = () => { rec.errors.push({ at: Date.now(), what: `readyState ${es.readyState}` }); };
    es.onRetryDelayReceived = (ms) => { rec.retries.push(ms); };
    rec.es = es;
    rec.close = () => es.close();
    return rec;
  },
};

async function account(name) {
  const r = await http(c.nginxPort, 'POST', '/accounts', { name });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

// POST /events through nginx. A 502/503/504 (a backend just died) is retried
// with the same Idempotency-Key, so the event is stored exactly once and the
// id answered is the one stored.
async function post(userId, data) {
  const key = randomUUID();
  for (let i = 0; ; i++) {
    let r;
    try {
      r = await http(c.nginxPort, 'POST', '/events', { userId, type: TYPE, data }, { 'Idempotency-Key': key });
    } catch (e) {
      if (i >= 20) throw e;
      await sleep(100);
      continue;
    }
    if (r.status === 202) return { id: r.body.id, type: TYPE, data };
    if (i >= 20 || ![502, 503, 504].includes(r.status)) assert.fail(`POST /events: ${r.status} ${JSON.stringify(r.body)}`);
    await sleep(100);
  }
}

const pings = (conn) => (conn.text.match(/^: ping$/gm) || []).length;

// What the library dispatched, with each envelope reduced to the fields the
// test chose (serverId and ts vary); data that is not JSON is kept as is.
function seen(rec) {
  return rec.msgs.map((m) => {
    let env;
    try { env = JSON.parse(m.data); } catch (e) { return { id: m.id, event: m.event, data: m.data }; }
    return { id: m.id, event: m.event, data: { id: env.id, type: env.type, userId: env.userId, data: env.data } };
  });
}

function assertExactly(rec, userId, want, what) {
  assert.deepEqual(rec.msgs.filter((m) => m.data === ''), [], `${what}: no message with empty data`);
  assert.deepEqual(seen(rec), want.map((w) => ({ id: w.id, event: w.type, data: { id: w.id, type: w.type, userId, data: w.data } })),
                   `${what}: exactly the events posted, each once, in order, with their ids and data`);
}

// Waits until the stream carried two more heartbeats: the stream is idle
// (a stream receiving events gets none), so this is two heartbeat periods
// in which an empty message would have been dispatched.
async function twoHeartbeats(conn, what) {
  const n = pings(conn);
  await waitFor(() => pings(conn) >= n + 2, 6000, `two heartbeats on the idle stream ${what}`);
}

for (const [name, open] of Object.entries(LIBS)) {
  test(`${name}: no empty message, every event exactly once, across heartbeats and a SIGKILL of its backend`, async (t) => {
    await waitFor(async () => (await c.streamsOn('backend-1')) + (await c.streamsOn('backend-2')) === 0,
                  10000, 'no stream left from an earlier test');
    const u = await account(name);
    const rec = open(c.url(`/events/sse?userId=${u}`));
    let killed = null;
    try {
      // 1. The stream is open; its hello names the backend holding it.
      await waitFor(() => rec.opens === 1 && /^: ssegate \S+$/m.test(rec.conns[0]?.text || ''), 10000, 'the stream open, its hello read');
      const hello = /^retry: (\d+)\n: ssegate (backend-[12])\n/.exec(rec.conns[0].text);
      assert.ok(hello, `hello: ${JSON.stringify(rec.conns[0].text.slice(0, 80))}`);
      assert.equal(Number(hello[1]), RETRY_MS);
      assert.equal(rec.conns[0].lastEventId, null, 'no Last-Event-ID on the first request');
      const holder = hello[2], other = holder === 'backend-1' ? 'backend-2' : 'backend-1';
      assert.equal(await c.streamsOn(holder), 1, `${holder} holds the stream`);
      assert.equal(await c.streamsOn(other), 0);

      // 2. Events through nginx, then an idle stream for two heartbeats.
      const want = [];
      for (let n = 0; n < 5; n++) want.push(await post(u, { lib: name, n, phase: 'before' }));
      await waitFor(() => rec.msgs.length >= want.length, 10000, 'five events');
      await twoHeartbeats(rec.conns[0], 'before the kill');
      assertExactly(rec, u, want, 'before the kill');
      assert.deepEqual(rec.errors, [], 'no error before the kill');
      assert.deepEqual(rec.retries, [RETRY_MS], 'retry: read once, from the hello');

      // 3. SIGKILL the backend holding the stream; post while the library
      //    waits out retry: before reconnecting.
      killed = holder;
      await c.backends[holder].proc.stop('SIGKILL');
      await waitFor(() => rec.errors.length >= 1, 10000, 'the library to see its stream drop');
      for (let n = 0; n < 3; n++) want.push(await post(u, { lib: name, n, phase: 'during' }));
      assert.equal(rec.conns.length, 1, 'the events were stored before the library reconnected');
      await waitFor(() => rec.opens === 2 && /^: ssegate \S+$/m.test(rec.conns[1]?.text || ''), 10000, 'the library to reconnect');
      const re = rec.conns[1];
      assert.equal(re.status, 200);
      assert.equal(re.lastEventId, want[4].id, 'Last-Event-ID on reconnect: the id of the last event dispatched');
      assert.match(re.text, new RegExp(`^retry: ${RETRY_MS}\\n: ssegate ${other}\\n`), 'resumed on the survivor');
      const delay = re.at - rec.errors[0].at;
      assert.ok(delay >= RETRY_MS - 100 && delay < RETRY_MS + 3000, `reconnected after retry: ${RETRY_MS} ms (took ${delay} ms)`);
      for (let n = 0; n < 2; n++) want.push(await post(u, { lib: name, n, phase: 'after' }));
      await waitFor(() => rec.msgs.length >= want.length, 10000, 'ten events');
      await twoHeartbeats(re, 'after the reconnect');
      assertExactly(rec, u, want, 'across the SIGKILL');
      assert.deepEqual(c.history(u).filter((e) => e.type === TYPE).map((e) => e.id), want.map((w) => w.id),
                       'Redis history holds exactly the events posted');
      assert.equal(rec.conns.length, 2, 'one reconnect');
      assert.equal(rec.errors.length, 1, `one error: ${JSON.stringify(rec.errors)}`);
      assert.equal(await c.streamsOn(other), 1, `${other} holds the stream`);
      t.diagnostic(JSON.stringify({ closes: rec.closes, errors: rec.errors.map((e) => e.what), retries: rec.retries, reconnectMs: delay, log: rec.log }));
    } finally {
      rec.close();
      if (killed) await c.startBackend(killed);
    }
  });
}

test('every process of the topology stops cleanly, with no sanitizer report', () => c.assertCleanStop());
