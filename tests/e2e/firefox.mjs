// firefox.mjs -- stock headless Firefox (Debian's firefox-esr) with no
// driver: it opens one page, and the page reports what it saw by POSTing
// to a server the test runs (Playwright's Firefox needs Mozilla's patched
// build). Every process is stopped by its own process group id.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sleep } from './cluster.mjs';

const FIREFOX = process.env.FIREFOX || '/usr/bin/firefox-esr';

// Traffic stays on 127.0.0.0/8: every request to any other host goes to a
// proxy on 127.0.0.1:9, where nothing listens (localhost is never proxied),
// and the background services that would try are turned off as well.
const PREFS = {
  'network.proxy.type': 1,
  'network.proxy.http': '127.0.0.1', 'network.proxy.http_port': 9,
  'network.proxy.ssl': '127.0.0.1', 'network.proxy.ssl_port': 9,
  'network.proxy.no_proxies_on': '',
  'network.proxy.allow_hijacking_localhost': false,
  'network.trr.mode': 5,
  'network.dns.disablePrefetch': true,
  'network.prefetch-next': false,
  'network.http.speculative-parallel-limit': 0,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'app.update.enabled': false,
  'app.normandy.enabled': false,
  'browser.shell.checkDefaultBrowser': false,
  'browser.startup.homepage_override.mstone': 'ignore',
  'browser.startup.page': 0,
  'browser.aboutwelcome.enabled': false,
  'browser.newtabpage.enabled': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'browser.safebrowsing.downloads.enabled': false,
  'browser.safebrowsing.blockedURIs.enabled': false,
  'browser.region.update.enabled': false,
  'browser.region.network.url': '',
  'browser.sessionstore.resume_from_crash': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'datareporting.healthreport.uploadEnabled': false,
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.unified': false,
  'toolkit.telemetry.archive.enabled': false,
  'datareporting.usage.uploadEnabled': false,
  'app.update.disabledForTesting': true,
  'dom.push.connection.enabled': false,
  'browser.topsites.contile.enabled': false,
  'browser.newtabpage.activity-stream.feeds.topsites': false,
  'browser.newtabpage.activity-stream.showSponsoredTopSites': false,
  'media.gmp-manager.updateEnabled': false,
  'media.gmp-gmpopenh264.enabled': false,
  'media.gmp-widevinecdm.enabled': false,
  'extensions.update.enabled': false,
  'extensions.blocklist.enabled': false,
  'extensions.getAddons.cache.enabled': false,
  'extensions.systemAddon.update.enabled': false,
  // Remote settings (honoured with MOZ_REMOTE_SETTINGS_DEVTOOLS=1).
  'services.settings.server': 'http://127.0.0.1:9/v1',
  'geo.provider.network.url': '',
  // One foreground tab; its timers (EventSource's reconnect) unthrottled.
  'dom.min_background_timeout_value': 0,
};

function userJs() {
  return Object.entries(PREFS).map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});\n`).join('');
}

export async function firefoxVersion() {
  const p = spawn(FIREFOX, ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  p.stdout.on('data', (b) => { out += b; });
  await new Promise((resolve, reject) => { p.once('exit', resolve); p.once('error', reject); });
  return out.trim();
}

// Opens url in a fresh profile. Returns { pid, log(), stop() }.
export function openFirefox(url, logDir) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ssegate-firefox-'));
  fs.writeFileSync(path.join(profile, 'user.js'), userJs());
  const logPath = path.join(logDir, `firefox-${Date.now()}.log`);
  const fd = fs.openSync(logPath, 'a');
  // detached: its own process group, so stop() reaches its content
  // processes too, by the group id of the process started here.
  const child = spawn(FIREFOX, ['--headless', '--no-remote', '--profile', profile, url], {
    detached: true, stdio: ['ignore', fd, fd],
    env: { ...process.env, MOZ_CRASHREPORTER_DISABLE: '1', MOZ_DISABLE_AUTO_SAFE_MODE: '1', MOZ_REMOTE_SETTINGS_DEVTOOLS: '1' },
  });
  fs.closeSync(fd);
  const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
  let done = null;
  exited.then((x) => { done = x; });
  return {
    pid: child.pid,
    log: () => fs.readFileSync(logPath, 'utf8'),
    async stop() {
      for (const sig of ['SIGTERM', 'SIGKILL']) {
        try { process.kill(-child.pid, sig); } catch (e) { /* the group is gone */ }
        if (done || (await Promise.race([exited, sleep(5000).then(() => null)]))) break;
      }
      fs.rmSync(profile, { recursive: true, force: true });
      return done;
    },
  };
}
