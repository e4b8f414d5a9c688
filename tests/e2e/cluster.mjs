// cluster.mjs -- the deployed topology on loopback for the end-to-end
// tests: a private redis-server, backend-1 and backend-2 (the built
// ssegate), and nginx with nginx/nginx.conf rendered by
// scripts/render-nginx. Every process is stopped by its own pid; every
// wait has a deadline.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const top = path.resolve(here, '..', '..');
export const BIN = process.env.SSEGATE_BIN || path.join(top, 'build', 'asan', 'ssegate');
export const HOST = '127.0.0.1';
const SANITIZER = /ERROR: AddressSanitizer|runtime error:|LeakSanitizer/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let v;
    try { v = await pred(); } catch (e) { v = false; }
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

class Proc {
  constructor(name, cmd, args, env, logDir) {
    this.name = name;
    this.logPath = path.join(logDir, `${name}.log`);
    const fd = fs.openSync(this.logPath, 'a');
    this.child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    this.exited = new Promise((resolve) => this.child.once('exit', (code, sig) => resolve({ code, sig })));
    this.exitInfo = null;
    this.exited.then((x) => { this.exitInfo = x; });
  }

  get pid() { return this.child.pid; }
  alive() { return this.exitInfo === null; }
  output() { return fs.readFileSync(this.logPath, 'utf8'); }

  // Sends sig to this process (by pid) and waits for it to exit.
  async stop(sig = 'SIGTERM', timeoutMs = 10000) {
    if (this.alive()) {
      process.kill(this.pid, sig);
      const t = sleep(timeoutMs).then(() => 'timeout');
      if ((await Promise.race([this.exited, t])) === 'timeout') {
        process.kill(this.pid, 'SIGKILL');
        await this.exited;
      }
    }
    return this.exitInfo;
  }
}

export async function http(port, method, p, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(`http://${HOST}:${port}${p}`, init);
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch (e) { json = text; }
  return { status: res.status, headers: res.headers, body: json };
}

export class Cluster {
  constructor(opts = {}) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ssegate-e2e-'));
    // TRUSTED_PROXIES as scripts/cluster sets it: nginx connects from
    // 127.0.0.1 and names each client in X-Forwarded-For.
    // DRAIN_SECS 0: tests stop backends often; the restart test drains.
    this.env = { HEARTBEAT_SECS: '1', SSE_RETRY_MS: '300', HTTP_THREADS: '4',
                 TRUSTED_PROXIES: '127.0.0.1/32', DRAIN_SECS: '0', ...(opts.env || {}) };
    this.procs = [];
  }

  async start() {
    [this.redisPort, this.b1Port, this.b2Port, this.nginxPort] =
      await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    await this.startRedis();
    this.backends = {
      'backend-1': { port: this.b1Port, proc: null },
      'backend-2': { port: this.b2Port, proc: null },
    };
    await Promise.all(Object.keys(this.backends).map((n) => this.startBackend(n)));
    await this.startNginx();
    return this;
  }

  redisCli(...args) {
    return execFileSync('redis-cli', ['-h', HOST, '-p', String(this.redisPort), ...args],
                        { encoding: 'utf8', timeout: 10000 }).trim();
  }

  async startRedis() {
    fs.mkdirSync(path.join(this.dir, 'redis'), { recursive: true });
    this.redis = new Proc('redis', 'redis-server',
      ['--bind', HOST, '--port', String(this.redisPort), '--dir', path.join(this.dir, 'redis'),
       '--appendonly', 'yes', '--appendfsync', 'always', '--save', ''], {}, this.dir);
    this.procs.push(this.redis);
    await waitFor(() => this.redisCli('PING') === 'PONG', 10000, 'redis-server');
  }

  async startBackend(name) {
    const b = this.backends[name];
    b.proc = new Proc(`${name}-${Date.now()}`, BIN, [], {
      ...this.env, SERVER_ID: name, PORT: String(b.port), LISTEN_ADDR: HOST,
      REDIS_HOST: HOST, REDIS_PORT: String(this.redisPort),
    }, this.dir);
    this.procs.push(b.proc);
    await waitFor(async () => {
      if (!b.proc.alive()) throw new Error(`${name} exited: ${b.proc.output().slice(-2000)}`);
      return (await http(b.port, 'GET', '/health')).status === 200;
    }, 15000, `${name} /health`).catch((e) => {
      throw new Error(`${e.message}\n${b.proc.output().slice(-2000)}`);
    });
    // Started is in rotation: the next step of a test may count on nginx
    // sending requests to this backend (or on it surviving a kill of the
    // other one).
    if (this.nginx) await this.nginxRoutesTo(name);
  }

  // Stops a backend with sig (by pid) and starts it again on its port.
  async restartBackend(name, sig = 'SIGTERM') {
    const x = await this.backends[name].proc.stop(sig, 15000);
    await this.startBackend(name);
    return x;
  }

  async startNginx() {
    const ndir = path.join(this.dir, 'nginx');
    fs.mkdirSync(ndir, { recursive: true });
    const conf = execFileSync(path.join(top, 'scripts', 'render-nginx'),
      [ndir, String(this.nginxPort), String(this.b1Port), String(this.b2Port)], { encoding: 'utf8' });
    this.nginxConf = path.join(ndir, 'nginx.conf');
    fs.writeFileSync(this.nginxConf, conf);
    this.nginx = new Proc(`nginx-${Date.now()}`, 'nginx', ['-p', ndir, '-c', this.nginxConf, '-g', 'daemon off;'], {}, this.dir);
    this.procs.push(this.nginx);
    await waitFor(async () => {
      if (!this.nginx.alive()) throw new Error(`nginx exited: ${this.nginx.output()}`);
      return (await http(this.nginxPort, 'GET', '/health')).status === 200;
    }, 10000, 'nginx');
  }

  url(p) { return `http://${HOST}:${this.nginxPort}${p}`; }

  // Waits until nginx sends a request to backend name again: after a
  // backend failed, nginx rests it for fail_timeout (nginx/nginx.conf)
  // even once it is back; a /health answered by it ends the rest.
  async nginxRoutesTo(name) {
    await waitFor(async () => {
      // Any answer of its own will do (a 503 while Redis is down too).
      return (await http(this.nginxPort, 'GET', '/health')).body?.serverId === name;
    }, 10000, `nginx to send requests to ${name}`);
  }

  async streamsOn(name) {
    const r = await http(this.backends[name].port, 'GET', '/health');
    return r.body.streams;
  }

  // Every event id and type in a user's history, oldest first: the ground truth.
  history(userId) {
    const out = this.redisCli('XRANGE', `ssegate:history:${userId}`, '-', '+');
    const lines = out ? out.split('\n') : [];
    const ids = [];
    for (let i = 0; i < lines.length; i += 5) ids.push({ id: lines[i], type: lines[i + 2] });
    return ids;
  }

  sanitizerReports() {
    return this.procs.filter((p) => SANITIZER.test(p.output())).map((p) => `${p.name}:\n${p.output().slice(-3000)}`);
  }

  // Stops everything; fails on a sanitizer report or an unclean exit
  // (a backend a test SIGKILLed excepted).
  async assertCleanStop() {
    const reports = this.sanitizerReports();
    const codes = await this.stop();
    if (reports.length) throw new Error(`sanitizer report:\n${reports.join('\n')}`);
    for (const [name, x] of Object.entries(codes)) {
      if (x && x.sig === 'SIGKILL') continue;
      if (!x || x.code !== 0) throw new Error(`${name} exited ${JSON.stringify(x)}`);
    }
  }

  async stop() {
    const codes = {};
    for (const p of [...this.procs].reverse()) codes[p.name] = await p.stop('SIGTERM', 15000);
    return codes;
  }
}

export { Proc };
