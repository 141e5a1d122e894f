// The browser every scenario runs in: Debian's chromium through playwright-core, headless, with
// a persistent profile whose third-party cookie setting the scenario chooses, every test host
// mapped to 127.0.0.1, and the test CA's certificates accepted. Shared by scenario.mjs and sso.mjs.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

// thirdPartyCookies: 'allow' (what a user gets by allowing them in chrome://settings/cookies),
// 'block' (blocking them there), or undefined (the browser's default).
export async function launch(cfg, thirdPartyCookies) {
  if (thirdPartyCookies) {
    const block = thirdPartyCookies === 'block';
    mkdirSync(join(cfg.userDataDir, 'Default'), { recursive: true });
    writeFileSync(join(cfg.userDataDir, 'Default', 'Preferences'),
      JSON.stringify({ profile: { cookie_controls_mode: block ? 1 : 0, block_third_party_cookies: block } }));
  }
  const context = await chromium.launchPersistentContext(cfg.userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    ignoreHTTPSErrors: true, // the sidecar's certificate comes from the test's own CA
    args: [
      '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-gpu', '--no-first-run',
      ...(thirdPartyCookies === 'block' ? ['--test-third-party-cookie-phaseout'] : []),
      `--host-resolver-rules=${cfg.hosts.map((h) => `MAP ${h} 127.0.0.1`).join(', ')}`,
    ],
  });
  const page = context.pages()[0] ?? await context.newPage();
  return { context, page };
}

// What a scenario saw: `step(what, data)` records one step.
export function recorder(name) {
  const out = { scenario: name, steps: [] };
  return { out, step: (what, data) => out.steps.push({ what, ...data }) };
}

// Runs `body` and prints one JSON line with the steps it recorded (and the error, if it threw,
// with the page's URL at that moment); the Rust test asserts on it.
export async function run(out, context, page, body) {
  try {
    await body();
  } catch (e) {
    out.error = String(e && e.stack || e);
    out.url = page.url();
  }
  await context.close();
  console.log(JSON.stringify(out));
}
