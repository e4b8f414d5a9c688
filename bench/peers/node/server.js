// The design most teams write by hand (the service ssegate replaces was
// NestJS + ioredis): node:http, one SUBSCRIBE per process, a Map from user
// to open responses, JSON.parse once and JSON.stringify per event.
// Same API subset as ssegate: POST /events, GET /events/sse?userId=.
import http from 'node:http';
import Redis from 'ioredis';

const PORT = Number(process.env.PORT || 3000);
const CHANNEL = process.env.REDIS_CHANNEL || 'user-events';
const SERVER_ID = process.env.SERVER_ID || 'node';
const redisOpts = { host: process.env.REDIS_HOST || '127.0.0.1', port: Number(process.env.REDIS_PORT || 6379) };
const cmd = new Redis(redisOpts);
const sub = new Redis(redisOpts);
const byUser = new Map();     // userId -> Set of responses
const firehose = new Set();

sub.subscribe(CHANNEL);
sub.on('message', (_ch, msg) => {
  let ev;
  try { ev = JSON.parse(msg); } catch { return; }
  const targets = [...(byUser.get(String(ev.userId)) || []), ...firehose];
  for (const res of targets) {
    res.write(`id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify(ev)}\n\n`);
  }
});

setInterval(() => {
  for (const set of [...byUser.values(), firehose]) for (const res of set) res.write(': ping\n\n');
}, 15000).unref();

function json(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (req.method === 'GET' && url.pathname === '/health') return json(res, 200, { status: 'ok' });
  if (req.method === 'GET' && url.pathname === '/events/sse') {
    const user = url.searchParams.get('userId');
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache',
                         'X-Accel-Buffering': 'no' });
    res.write('retry: 3000\n\n');
    const set = user ? (byUser.get(user) || byUser.set(user, new Set()).get(user)) : firehose;
    set.add(res);
    req.on('close', () => {
      set.delete(res);
      if (user && set.size === 0) byUser.delete(user);
    });
    return;
  }
  if (req.method === 'POST' && url.pathname === '/events') {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => {
      body += d;
      if (body.length > 65536) req.destroy();
    });
    req.on('end', async () => {
      let input;
      try { input = JSON.parse(body); } catch { return json(res, 400, { error: 'invalid_json' }); }
      if (!input || !input.userId || !input.type) return json(res, 400, { error: 'invalid_field' });
      const id = String(await cmd.incr('bench:node:id'));
      const ev = { id, type: input.type, userId: String(input.userId), data: input.data ?? null,
                   serverId: SERVER_ID, ts: Date.now() };
      await cmd.publish(CHANNEL, JSON.stringify(ev));
      json(res, 202, { id });
    });
    return;
  }
  json(res, 404, { error: 'not_found' });
});

server.keepAliveTimeout = 60000;
server.listen(PORT, '127.0.0.1');
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    server.close();
    for (const set of [...byUser.values(), firehose]) for (const res of set) res.end();
    Promise.allSettled([cmd.quit(), sub.quit()]).then(() => process.exit(0));
  });
}
