// clients.test.mjs -- the SSE clients people use, all at once, through nginx
// in front of backend-1 and backend-2: in Node, @microsoft/fetch-event-source,
// extended-eventsource, eventsource 4 and 5, eventsource-client and
// `curl -N`; in headless Chromium and in headless Firefox, the browser's own
// EventSource and sse.js (XMLHttpRequest underneath). Each client streams
// for its own user. The test posts events, lets every stream idle through
// heartbeats, SIGKILLs backend-1 (the clients it held resume on backend-2),
// starts it again, SIGKILLs backend-2 (every client resumes on backend-1),
// posting while the clients wait out retry:, then idles them again. Every
// client must dispatch exactly the events posted, each once, in order, with
// their ids and data, and nothing else: no message from the hello
// (`retry: N\n: ssegate ID\n`) or a heartbeat (`: ping\n`), which end in no
// blank line because the lenient libraries (fetch-event-source,
// extended-eventsource) dispatch a blank line as a message with data "".
//
// Wherever the bytes a client parsed can be seen (every Node library is
// given a fetch that taps the body, curl's output, sse.js's XMLHttpRequest),
// the test also checks them: the hello naming the backend, the heartbeats,
// the Last-Event-ID sent on each reconnect, and that the WHATWG parsing
// rules (HTML 9.2.6) get from them exactly what the client dispatched.
// The browser's own EventSource hides its bytes; it streams beside the
// others through the same windows.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import nodeHttp from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fetchEventSource } from '@microsoft/fetch-event-source';
import { createEventSource } from 'eventsource-client';
import { EventSource as EventSource4 } from 'eventsource4';
import { EventSource as EventSource5 } from 'eventsource5';
import { EventSource as ExtendedEventSource } from 'extended-eventsource';
import { launchChromium } from './chromium.mjs';
import { Cluster, HOST, http, sleep, waitFor } from './cluster.mjs';
import { firefoxVersion, openFirefox } from './firefox.mjs';

// @microsoft/fetch-event-source 2.0.1 is written for browsers. Even with
// openWhenHidden: true (no visibilitychange listener is added) it calls
// window.setTimeout/clearTimeout to schedule a reconnect and
// document.removeEventListener() when it stops; without these globals the
// first dropped stream throws a ReferenceError out of the library instead
// of reconnecting. (window.fetch is not needed: we pass the fetch option.)
// These are the smallest shims; no other library needs any.
globalThis.window ??= { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (t) => clearTimeout(t) };
globalThis.document ??= { removeEventListener() {} };

const here = path.dirname(fileURLToPath(import.meta.url));
// retry: sent in the hello. No library's default (1000 to 5000 ms) is near
// it, so the reconnect delay shows whether the client honoured it.
const RETRY_MS = 1500;
const TYPE = 'clients.e2e';
const HELLO = new RegExp(`^retry: ${RETRY_MS}\\n: ssegate (backend-[12])\\n`);

// ---------------------------------------------------------------------------
// The WHATWG rules (HTML 9.2.6, "Interpreting an event stream"), applied to
// the texts of a client's successive connections (the last event ID lives
// on across reconnects; an event cut off by the end of a stream is
// dropped). blankWithoutData counts the blank lines that dispatch nothing
// here but a message with data "" in a lenient client.
function whatwg(texts) {
  const out = { msgs: [], lastId: '', retries: [], blankWithoutData: 0, comments: [] };
  for (const text of texts) {
    let data = '', type = '';
    const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/);
    lines.pop(); // a line not yet ended (or "" after the last line end)
    for (const line of lines) {
      if (line === '') {
        if (data === '') { out.blankWithoutData += 1; type = ''; continue; }
        out.msgs.push({ id: out.lastId, event: type || 'message', data: data.slice(0, -1) });
        data = ''; type = '';
        continue;
      }
      if (line[0] === ':') { out.comments.push(line.slice(1)); continue; }
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(line[i + 1] === ' ' ? i + 2 : i + 1);
      if (field === 'event') type = value;
      else if (field === 'data') data += `${value}\n`;
      else if (field === 'id' && !value.includes('\0')) out.lastId = value;
      else if (field === 'retry' && /^[0-9]+$/.test(value)) out.retries.push(Number(value));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// A client's record. msgs: every message it dispatched; opens, errors: its
// opened and dropped streams; conns: every request it made (when they can
// be seen), with the Last-Event-ID it sent, how many messages it had
// dispatched by then, and the bytes it got back; retries: the retry:
// values it reported (null where it reports none).
function newRecord() {
  return { msgs: [], conns: [], opens: 0, openAts: [], errors: [], retries: null, log: [], close() {} };
}

function opened(rec) {
  rec.opens += 1;
  rec.openAts.push(Date.now());
}

// The global fetch, recording each request's Last-Event-ID and a copy of
// the response body as it is handed to the library.
function tappedFetch(rec) {
  return async (input, init) => {
    const req = new Request(input, init);
    const conn = { at: Date.now(), lastEventId: req.headers.get('last-event-id'), before: rec.msgs.length, status: null, text: '' };
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

// An EventTarget-based library dispatches every message through
// this.dispatchEvent: wrapping it sees all of them, whatever their type
// ("message" for one without an event: field, as an empty one would be).
function tapDispatch(es, rec) {
  es.dispatchEvent = (ev) => {
    if (ev instanceof MessageEvent) rec.msgs.push({ id: ev.lastEventId, event: ev.type, data: ev.data });
    return EventTarget.prototype.dispatchEvent.call(es, ev);
  };
}

// The eventsource package (4 and 5 alike): WHATWG EventSource in Node.
function eventsourcePackage(EventSource) {
  return (url) => {
    const rec = newRecord();
    const es = new EventSource(url, { fetch: tappedFetch(rec) });
    tapDispatch(es, rec);
    es.onopen = () => opened(rec);
    es.onerror = (e) => { rec.errors.push({ at: Date.now(), what: `${e.message} (readyState ${es.readyState})` }); };
    rec.close = () => es.close();
    return rec;
  };
}

// `curl -N` shows the bytes; what an EventSource would make of them is the
// WHATWG parse above. When curl exits (its stream dropped), it is run again
// after retry: with -H 'Last-Event-ID: <the last id it showed>', as a
// person at a terminal would.
function curlClient(url) {
  const rec = newRecord();
  rec.retries = [];
  let child = null, timer = null, closed = false;
  const parse = () => {
    const p = whatwg(rec.conns.map((c) => c.text));
    rec.msgs = p.msgs;
    rec.retries = p.retries;
    return p;
  };
  const connect = () => {
    const p = parse();
    const conn = { at: Date.now(), lastEventId: p.lastId || null, before: rec.msgs.length, status: null, head: '', text: '', exit: null };
    rec.conns.push(conn);
    const args = ['-sS', '-N', '-i', ...(conn.lastEventId ? ['-H', `Last-Event-ID: ${conn.lastEventId}`] : []), url];
    child = spawn('curl', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.setEncoding('utf8');
    let raw = '';
    child.stdout.on('data', (s) => {
      if (conn.status === null) {
        raw += s;
        const end = raw.indexOf('\r\n\r\n');
        if (end < 0) return;
        conn.head = raw.slice(0, end);
        conn.status = Number(/^HTTP\/[\d.]+ (\d+)/.exec(conn.head)[1]);
        conn.text = raw.slice(end + 4);
        opened(rec);
      } else {
        conn.text += s;
      }
      parse();
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s) => { rec.log.push(s.trim()); });
    child.once('exit', (code, sig) => {
      conn.exit = code ?? sig;
      child = null;
      if (closed) return;
      rec.errors.push({ at: Date.now(), what: `curl exited ${conn.exit}` });
      timer = setTimeout(connect, parse().retries.at(-1) ?? 3000);
    });
  };
  connect();
  rec.close = () => {
    closed = true;
    clearTimeout(timer);
    if (child) child.kill('SIGTERM');
  };
  return rec;
}

const NODE_CLIENTS = {
  '@microsoft/fetch-event-source': (url) => {
    const rec = newRecord();
    rec.retries = [];
    const ctl = new AbortController();
    rec.close = () => ctl.abort();
    fetchEventSource(url, {
      signal: ctl.signal,
      openWhenHidden: true,
      fetch: tappedFetch(rec),
      async onopen(res) {
        opened(rec);
        const type = res.headers.get('content-type') || '';
        if (res.status !== 200 || !type.startsWith('text/event-stream')) throw new Error(`stream answered ${res.status} ${type}`);
      },
      onmessage(m) {
        if (m.retry !== undefined) rec.retries.push(m.retry);
        rec.msgs.push({ id: m.id, event: m.event || 'message', data: m.data });
      },
      // The library resolves (and never reconnects) when a stream ends
      // cleanly; its README has onclose throw to retry.
      onclose() { rec.log.push('the server ended the stream'); throw new Error('the server ended the stream'); },
      // Returning nothing: retry after the interval the server's retry: set.
      onerror(err) { rec.errors.push({ at: Date.now(), what: String(err) }); },
    }).catch((e) => { rec.log.push(`rejected: ${e}`); });
    return rec;
  },

  'extended-eventsource': (url) => {
    const rec = newRecord();
    rec.retries = [];
    const log = (lvl) => (...a) => rec.log.push(`${lvl}: ${a.map(String).join(' ')}`);
    const es = new ExtendedEventSource(url, {
      fetch: tappedFetch(rec),
      logger: { trace() {}, debug() {}, info() {}, warn: log('warn'), error: log('error') },
    });
    // Dispatched asynchronously after the fetch, through this.dispatchEvent.
    tapDispatch(es, rec);
    es.onopen = () => opened(rec);
    es.onerror = () => { rec.errors.push({ at: Date.now(), what: `readyState ${es.readyState}` }); };
    es.onRetryDelayReceived = (ms) => { rec.retries.push(ms); };
    rec.close = () => es.close();
    return rec;
  },

  'eventsource 4': eventsourcePackage(EventSource4),
  'eventsource 5': eventsourcePackage(EventSource5),

  // Not an EventSource: a stream that drops is "onScheduleReconnect" (it
  // has no error callback for it), its onConnect the open.
  'eventsource-client': (url) => {
    const rec = newRecord();
    const es = createEventSource({
      url,
      fetch: tappedFetch(rec),
      onMessage: (m) => { rec.msgs.push({ id: m.id, event: m.event || 'message', data: m.data }); },
      onConnect: () => opened(rec),
      onScheduleReconnect: ({ delay }) => { rec.errors.push({ at: Date.now(), what: `reconnect in ${delay} ms` }); },
    });
    rec.close = () => es.close();
    return rec;
  },

  'curl -N': curlClient,
};

// ---------------------------------------------------------------------------
// The browsers: each opens clients-page.html from a small server on
// 127.0.0.1 (an origin in the gateway's CORS_ORIGINS), which opens its
// clients and POSTs what each saw back to that server.
const BROWSERS = { chromium: 'Chromium', firefox: 'Firefox' };
const BROWSER_KINDS = ['EventSource', 'sse.js'];
const ALL = [...Object.keys(NODE_CLIENTS), ...Object.values(BROWSERS).flatMap((b) => BROWSER_KINDS.map((k) => `${b} ${k}`))];

class Collector {
  async start() {
    this.reports = {};
    const files = {
      '/clients-page.html': [path.join(here, 'clients-page.html'), 'text/html'],
      '/sse.js': [path.join(here, 'node_modules', 'sse.js', 'lib', 'sse.js'), 'text/javascript'],
    };
    this.server = nodeHttp.createServer((req, res) => {
      const u = new URL(req.url, 'http://x');
      if (req.method === 'GET' && files[u.pathname]) {
        const [file, type] = files[u.pathname];
        res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store' });
        res.end(fs.readFileSync(file));
        return;
      }
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (s) => { body += s; });
      req.on('end', () => {
        const m = /^\/report\/(\w+)$/.exec(u.pathname);
        if (req.method !== 'POST' || !m) { res.writeHead(404); res.end(); return; }
        const r = JSON.parse(body);
        if (!this.reports[m[1]] || this.reports[m[1]].seq < r.seq) this.reports[m[1]] = r;
        res.writeHead(204);
        res.end();
      });
    });
    await new Promise((resolve) => this.server.listen(0, HOST, resolve));
    this.origin = `http://${HOST}:${this.server.address().port}`;
    return this;
  }

  pageUrl(browser, clients) {
    return `${this.origin}/clients-page.html?report=${encodeURIComponent(`/report/${browser}`)}&clients=${encodeURIComponent(JSON.stringify(clients))}`;
  }

  // A record kept up to date by the page's reports.
  record(browser, name) {
    const self = this;
    const r = () => self.reports[browser]?.recs[name];
    return {
      get msgs() { return r()?.msgs ?? []; },
      get opens() { return r()?.opens.length ?? 0; },
      get openAts() { return r()?.opens ?? []; },
      get errors() { return r()?.errors ?? []; },
      get conns() { return r()?.conns ?? null; },
      get log() { return r()?.log ?? []; },
      get agent() { return r()?.agent; },
      retries: null,
      close() {},
    };
  }

  stop() { return new Promise((resolve) => this.server.close(resolve)); }
}

// ---------------------------------------------------------------------------
let c, collector, chromium, firefox;
const recs = {}, users = {}, want = {};

before(async () => {
  collector = await new Collector().start();
  [c, chromium] = await Promise.all([
    new Cluster({ env: { HEARTBEAT_SECS: '1', SSE_RETRY_MS: String(RETRY_MS), CORS_ORIGINS: collector.origin } }).start(),
    launchChromium(),
  ]);
});

async function closeClients() {
  for (const rec of Object.values(recs)) rec.close();
  if (firefox) await firefox.stop();
  if (chromium) await chromium.close();
}

after(async () => {
  await closeClients();
  if (c) await c.stop();
  if (collector) await collector.stop();
});

async function account(name) {
  const r = await http(c.nginxPort, 'POST', '/accounts', { name });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.id;
}

// POST /events through nginx, or straight to a backend's port. A
// 502/503/504 (a backend just died) is retried with the same
// Idempotency-Key, so the event is stored exactly once and the id answered
// is the one stored.
async function post(userId, data, port = c.nginxPort) {
  const key = randomUUID();
  for (let i = 0; ; i++) {
    let r;
    try {
      r = await http(port, 'POST', '/events', { userId, type: TYPE, data }, { 'Idempotency-Key': key });
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

// n events for every client, in order for each, the clients in parallel.
async function postEach(n, phase, port) {
  await Promise.all(Object.keys(recs).map(async (name) => {
    for (let k = 0; k < n; k++) want[name].push(await post(users[name], { client: name, k, phase }, port));
  }));
}

function allReceived(what) {
  return waitFor(() => Object.entries(recs).every(([name, rec]) => rec.msgs.length >= want[name].length),
                 15000, `every client to receive every event ${what}`);
}

const pings = (conn) => (conn.text.match(/^: ping$/gm) || []).length;

// Waits until every stream whose bytes are seen carried three more
// heartbeats: every stream is idle (one receiving events gets none), and
// three heartbeats of one stream span more than two periods, so each
// stream, the browsers' own EventSource included, had two heartbeats in
// which an empty message would have been dispatched.
async function idleThroughHeartbeats(what) {
  const seenConns = () => Object.values(recs).filter((r) => r.conns).map((r) => r.conns.at(-1));
  const base = seenConns().map(pings);
  await waitFor(() => seenConns().every((conn, i) => pings(conn) >= base[i] + 3), 10000, `three heartbeats on every stream ${what}`);
}

const totalOpens = () => Object.values(recs).reduce((n, r) => n + r.opens, 0);

// SIGKILLs a backend, posts while its clients wait out retry:, waits until
// they all resumed on the survivor, then starts it again (Cluster's
// startBackend waits until nginx sends requests to it). The posts go
// straight to the survivor: through nginx, a request to the dead backend
// is a 502 (a POST is never retried upstream) and, within fail_timeout of
// a backend's last failure, nginx has no live upstream at all, so posts
// retried through it could outlast retry: on a slow machine (the clients
// would reconnect before the events were stored and get them live, not by
// replay).
async function killAndResume(victim, survivor) {
  const n = Object.keys(recs).length;
  const moving = await c.streamsOn(victim), opens = totalOpens();
  await c.backends[victim].proc.stop('SIGKILL');
  await postEach(3, `${victim} killed`, c.backends[survivor].port);
  assert.equal(totalOpens(), opens, `the events were stored before any client of ${victim} reconnected: they come back by replay`);
  await waitFor(async () => totalOpens() === opens + moving && (await c.streamsOn(survivor)) === n,
                20000, `the ${moving} clients of ${victim} to resume on ${survivor}`);
  await c.startBackend(victim);
  return moving;
}

test('every client streams through nginx across heartbeats, a SIGKILL of backend-1 then of backend-2', async (t) => {
  const names = ALL;
  for (const name of names) { users[name] = await account(name); want[name] = []; }
  const url = (name) => c.url(`/events/sse?userId=${users[name]}`);
  for (const [name, open] of Object.entries(NODE_CLIENTS)) recs[name] = open(url(name));
  for (const [browser, label] of Object.entries(BROWSERS)) {
    const clients = BROWSER_KINDS.map((kind) => ({ name: `${label} ${kind}`, kind, url: url(`${label} ${kind}`), type: TYPE }));
    const page = collector.pageUrl(browser, clients);
    if (browser === 'chromium') await (await chromium.newPage()).goto(page);
    else firefox = openFirefox(page, c.dir);
    for (const cl of clients) recs[cl.name] = collector.record(browser, cl.name);
  }
  await waitFor(() => Object.values(recs).every((r) => r.opens === 1 && (!r.conns || /^: ssegate \S+$/m.test(r.conns[0]?.text || ''))),
                30000, 'every client to open its stream').catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(Object.fromEntries(Object.entries(recs).map(([n, r]) => [n, r.opens])))}\n${firefox?.log().slice(-2000)}`);
  });
  assert.equal((await c.streamsOn('backend-1')) + (await c.streamsOn('backend-2')), names.length, 'one stream per client');

  await postEach(5, 'first');
  await allReceived('before the kills');
  await idleThroughHeartbeats('before the kills');
  const moved = await killAndResume('backend-1', 'backend-2');
  await killAndResume('backend-2', 'backend-1');
  await postEach(2, 'last');
  await allReceived('after the kills');
  await idleThroughHeartbeats('after the kills');
  assert.equal(totalOpens(), 2 * names.length + moved, 'every client opened once, and again after each kill of its backend');
  t.diagnostic(`${moved} of ${names.length} clients started on backend-1 (killed twice); ${firefox ? await firefoxVersion() : ''}; ${await chromium.version()}`);
});

// ---------------------------------------------------------------------------
// The checks, one test per client.

// What the client dispatched, with each envelope reduced to the fields the
// test chose (serverId and ts vary); data that is not JSON is kept as is.
function seen(msgs, userId) {
  return msgs.map((m) => {
    let env;
    try { env = JSON.parse(m.data); } catch (e) { return { id: m.id, event: m.event, data: m.data }; }
    return { id: m.id, event: m.event, data: { id: env.id, type: env.type, userId: env.userId, data: env.data } };
  });
}

// The bytes of each connection: the hello names a backend, the first on
// whichever backend nginx chose, each reconnect on the other one (its
// predecessor died) with the Last-Event-ID of the last message dispatched,
// after retry:; the WHATWG rules get from them what the client dispatched.
function checkBytes(rec, name) {
  assert.equal(rec.conns.length, rec.opens, 'one request per stream opened');
  const holders = rec.conns.map((conn, i) => {
    const m = HELLO.exec(conn.text);
    assert.ok(m, `connection ${i}: hello ${JSON.stringify(conn.text.slice(0, 80))}`);
    if (conn.status != null) assert.equal(conn.status, 200); // sse.js's is not kept
    return m[1];
  });
  assert.equal(rec.conns[0].lastEventId, null, 'no Last-Event-ID on the first request');
  for (let i = 1; i < rec.conns.length; i++) {
    assert.notEqual(holders[i], holders[i - 1], `connection ${i} on the survivor`);
    assert.equal(rec.conns[i].lastEventId, rec.msgs[rec.conns[i].before - 1].id,
                 `connection ${i}: Last-Event-ID is the id of the last message dispatched`);
    const delay = rec.conns[i].at - rec.errors[i - 1].at;
    assert.ok(delay >= RETRY_MS - 100 && delay < RETRY_MS + 3000, `reconnected after retry: ${RETRY_MS} ms (took ${delay} ms)`);
  }
  assert.equal(holders.at(-1), 'backend-1', 'ends on backend-1');
  const w = whatwg(rec.conns.map((conn) => conn.text));
  assert.equal(w.blankWithoutData, 0, 'no blank line without data (a lenient client\'s empty message)');
  assert.deepEqual(rec.msgs, w.msgs, 'the client dispatched what the WHATWG rules get from its bytes');
  assert.ok(pings(rec.conns[0]) >= 3 && pings(rec.conns.at(-1)) >= 3, 'heartbeats on the first and the last stream');
  return { holders, pings: rec.conns.map(pings), lastEventIds: rec.conns.map((conn) => conn.lastEventId) };
}

for (const name of ALL) {
  test(`${name}: no empty message, every event exactly once, resumed with Last-Event-ID after each SIGKILL`, (t) => {
    const rec = recs[name];
    assert.ok(rec, 'the scenario ran');
    assert.deepEqual(rec.msgs.filter((m) => m.data === ''), [], 'no message with empty data');
    assert.deepEqual(seen(rec.msgs, users[name]), want[name].map((w) => ({ id: w.id, event: w.type, data: { id: w.id, type: w.type, userId: users[name], data: w.data } })),
                     'exactly the events posted, each once, in order, with their ids and data');
    assert.deepEqual(c.history(users[name]).filter((e) => e.type === TYPE).map((e) => e.id), want[name].map((w) => w.id),
                     'Redis history holds exactly the events posted');
    assert.ok(rec.opens === 2 || rec.opens === 3, `opened once and after each kill of its backend (${rec.opens})`);
    assert.equal(rec.errors.length, rec.opens - 1, `one drop per kill: ${JSON.stringify(rec.errors)}`);
    for (let i = 1; i < rec.opens; i++) {
      const delay = rec.openAts[i] - rec.errors[i - 1].at;
      assert.ok(delay >= RETRY_MS - 100 && delay < RETRY_MS + 3000, `reopened after retry: ${RETRY_MS} ms (took ${delay} ms)`);
    }
    if (rec.retries) assert.ok(rec.retries.length >= 1 && rec.retries.every((r) => r === RETRY_MS), `retry: ${rec.retries}`);
    const bytes = rec.conns ? checkBytes(rec, name) : 'not visible';
    t.diagnostic(JSON.stringify({ events: rec.msgs.length, opens: rec.opens, errors: rec.errors.map((e) => e.what), retries: rec.retries, bytes, agent: rec.agent, log: rec.log.slice(0, 4) }));
  });
}

test('every process of the topology stops cleanly, with no sanitizer report', async () => {
  await closeClients();
  await c.assertCleanStop();
});
