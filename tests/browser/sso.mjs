// One sign-in across hosts (issue 15) in Debian's chromium driven by playwright-core, with
// third-party cookies blocked. Prints one JSON line with what the browser saw; tests/tests/sso.rs
// asserts. Usage: node sso.mjs <scenario> <config JSON>
// config: { apps: {one, two, three, staff, alone}, auth, idp, hosts, userDataDir, keyPem, authIssuer }
import { createPrivateKey, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { launch, recorder, run } from './browser.mjs';

const [name, configJson] = process.argv.slice(2);
const cfg = JSON.parse(configJson);
// Third-party cookies blocked explicitly, so the scenario does not depend on the browser's default.
const { out, step } = recorder(name);
const { context, page } = await launch(cfg, 'block');

// Every top-level navigation that reaches the identity provider, or the authentication host.
const idpNavigations = [];
const authNavigations = [];
page.on('request', (r) => {
  if (r.isNavigationRequest() && r.frame() === page.mainFrame()) {
    if (r.url().startsWith(cfg.idp)) idpNavigations.push(r.url());
    if (r.url().startsWith(cfg.auth)) authNavigations.push(r.url());
  }
});

async function signInAtIdp(email) {
  await page.waitForSelector('input[name=login]', { timeout: 15000 });
  await page.fill('input[name=login]', email);
  await page.fill('input[name=password]', 'any');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  if (await page.$('button[type=submit]')) {
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  }
  await page.waitForURL((u) => !u.href.startsWith(cfg.idp), { timeout: 15000 });
}

async function visit(url) {
  const resp = await page.goto(url);
  let json = null;
  const text = await page.textContent('body').catch(() => null);
  try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
  return { url: page.url(), status: resp ? resp.status() : null, json, idp: idpNavigations.length };
}

async function cookieNames(url) {
  return (await context.cookies(url)).map((c) => c.name);
}

// Polls `url` (a navigation, as a user would) until its status is `want`; bounded.
async function until(url, want, tries = 120) {
  let last = null;
  for (let i = 0; i < tries; i += 1) {
    last = await visit(url);
    if (last.status === want) return last;
    await page.waitForTimeout(500);
  }
  return last;
}

// === hand-off codes made here, signed with the fixture session key the applications use ===
const b64 = (b) => Buffer.from(b).toString('base64url');
const key = cfg.keyPem ? createPrivateKey(readFileSync(cfg.keyPem)) : null;
function jws(typ, claims, signingKey = key) {
  const input = `${b64(JSON.stringify({ alg: 'EdDSA', typ }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${b64(sign(null, Buffer.from(input), signingKey))}`;
}
const now = () => Math.floor(Date.now() / 1000);
function code(app, st, over = {}) {
  return {
    aud: `portcullis-session:shop/${app}`, st, jti: b64(randomBytes(16)), sexp: now() + 3600,
    iss: cfg.authIssuer, sid: 'made-here', idp: cfg.idp, iat: now(), exp: now() + 30,
    claims: { email: 'mallory@mysite.com', sub: 'mallory' }, ...over,
  };
}

// Starts a hand-off at `app` (the browser goes on to the authentication host and, with no
// identity session there, to the provider's login page): the state cookie is set on the
// application's host; returns it, the state inside it, and the authentication host's URL the
// application sent the browser to.
async function startHandoff(app) {
  const origin = cfg.apps[app];
  const before = authNavigations.length;
  await page.goto(`${origin}/.portcullis/login?rd=${encodeURIComponent(`${origin}/data`)}`);
  const location = authNavigations[before] ?? null;
  const cookie = (await context.cookies(`${origin}/.portcullis/handoff`)).find((c) => c.name === 'portcullis_handoff');
  const st = cookie ? JSON.parse(Buffer.from(cookie.value.split('.')[1], 'base64url')).st : null;
  return { location, cookie, st };
}

async function present(app, value) {
  const seen = await visit(`${cfg.apps[app]}/.portcullis/handoff?code=${encodeURIComponent(value)}`);
  return { ...seen, session: (await cookieNames(cfg.apps[app])).includes('CF_Authorization') };
}

await run(out, context, page, async () => {
  switch (name) {
    case 'one_sign_in': {
      const { one, two, three, staff } = cfg.apps;
      step('one', await visit(`${one}/data`).catch(() => null));
      await signInAtIdp('alice@mysite.com');
      step('one_back', { url: page.url(), body: await page.textContent('body'), idp: idpNavigations.length });
      step('two', await visit(`${two}/data`));
      step('three', await visit(`${three}/data`));
      step('staff', await visit(`${staff}/data`));
      step('cookies', {
        one: await cookieNames(one), two: await cookieNames(two), three: await cookieNames(three),
        staff: await cookieNames(staff), auth: await cookieNames(cfg.auth),
      });
      step('auth_identity', await visit(`${cfg.auth}/.portcullis/identity`));
      // The application session is short (applicationSessionDuration); once it is over, a
      // navigation gets a new one from the identity session without the provider.
      step('two_expired', await until(`${two}/.portcullis/identity`, 401));
      step('two_again', await visit(`${two}/data`));
      // Sign-out at one ends the identity session; the others' sessions end within their
      // applicationSessionDuration, and then the provider is needed again.
      step('logout', await visit(`${one}/.portcullis/logout`));
      step('auth_identity_after', await visit(`${cfg.auth}/.portcullis/identity`));
      step('one_identity_after', await visit(`${one}/.portcullis/identity`));
      step('two_identity_after', await until(`${two}/.portcullis/identity`, 401));
      step('three_identity_after', await until(`${three}/.portcullis/identity`, 401));
      const before = idpNavigations.length;
      await page.goto(`${three}/data`).catch(() => null);
      step('three_after_logout', { idpBefore: before, idp: idpNavigations.length, url: page.url().split('?')[0] });
      break;
    }
    case 'codes': {
      const attempt = async (what, make) => {
        const h = await startHandoff('two');
        step(`${what}_start`, { location: h.location, st: Boolean(h.st) });
        step(what, await present('two', make(h.st)));
      };
      await attempt('expired', (st) => jws('portcullis-handoff+jwt', code('two', st, { iat: now() - 200, exp: now() - 100 })));
      await attempt('wrong_audience', (st) => jws('portcullis-handoff+jwt', code('one', st)));
      await attempt('tampered', (st) => {
        const [h, p, s] = jws('portcullis-handoff+jwt', code('two', st)).split('.');
        const claims = JSON.parse(Buffer.from(p, 'base64url'));
        claims.claims.email = 'admin@mysite.com';
        return `${h}.${b64(JSON.stringify(claims))}.${s}`;
      });
      await attempt('other_key', (st) => jws('portcullis-handoff+jwt', code('two', st),
        generateKeyPairSync('ed25519').privateKey));
      await attempt('other_type', (st) => jws('portcullis-handoff-state+jwt', code('two', st)));
      await attempt('other_browser', () => jws('portcullis-handoff+jwt', code('two', b64(randomBytes(32)))));
      await attempt('other_auth_host', (st) => jws('portcullis-handoff+jwt', code('two', st, { iss: 'portcullis-auth:evil.test' })));
      // No state cookie at all (a code carried to another browser).
      await context.clearCookies();
      step('no_state_cookie', await present('two', jws('portcullis-handoff+jwt', code('two', 'st'))));
      // The control: a well-formed code for this browser's hand-off is accepted…
      const h = await startHandoff('two');
      const good = jws('portcullis-handoff+jwt', code('two', h.st));
      step('valid', await present('two', good));
      // …once: the same code again, even with the state cookie put back, is refused.
      await context.addCookies([h.cookie]);
      step('replayed', await present('two', good));
      // The authentication host only hands codes to applications that use it.
      const auth = (ret, st = 'abc') => `${cfg.auth}/.portcullis/authenticate?return=${encodeURIComponent(ret)}&state=${st}`;
      const get = visit;
      step('return_not_member', await get(auth(`${cfg.apps.alone}/.portcullis/handoff`)));
      step('return_evil', await get(auth('https://evil.test/.portcullis/handoff')));
      step('return_other_path', await get(auth(`${cfg.apps.two}/data`)));
      step('return_bad_state', await get(auth(`${cfg.apps.two}/.portcullis/handoff`, 'a%20b')));
      const before = idpNavigations.length;
      step('return_member', { ...await get(auth(`${cfg.apps.two}/.portcullis/handoff`)), first: idpNavigations[before] ?? null });
      step('rd_evil', await get(`${cfg.apps.two}/.portcullis/login?rd=${encodeURIComponent('https://evil.test/')}`));
      step('auth_other_path', await get(`${cfg.auth}/anything`));
      break;
    }
    default:
      throw new Error(`unknown scenario ${name}`);
  }
});
