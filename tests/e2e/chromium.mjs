// chromium.mjs -- headless Debian Chromium for the page tests (driven by
// playwright-core), and where their screenshots go.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { top } from './cluster.mjs';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = process.env.ARTIFACTS_DIR || path.join(top, 'build', 'test-logs');

export async function launchChromium() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
