// One browser scenario of tests/tests/browser.rs, in Debian's chromium driven by
// playwright-core. Prints one JSON line with what the browser saw; the Rust test asserts.
// Usage: node scenario.mjs <name> <config JSON>
// config: { api, site, nocors, bypass, hosts: [..], userDataDir }  (origins with ports)
import { launch, recorder, run } from './browser.mjs';

const [name, configJson] = process.argv.slice(2);
const cfg = JSON.parse(configJson);
const { out, step } = recorder(name);
const { context, page } = await launch(cfg, cfg.allowThirdPartyCookies ? 'allow' : undefined);

// Signs in at the IdP's dev login page (login = email) and its consent page.
async function signInAtIdp(email) {
  await page.waitForSelector('input[name=login]', { timeout: 15000 });
  step('idp_login_page', { url: page.url().split('?')[0] });
  await page.fill('input[name=login]', email);
  await page.fill('input[name=password]', 'any');
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  if (await page.$('button[type=submit]')) {
    // Consent ("Authorize" / "Continue").
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  }
  await page.waitForURL((u) => !u.href.startsWith('http://127.0.0.1'), { timeout: 15000 });
}

async function cookiesOf(url) {
  return (await context.cookies(url)).map((c) => ({
    name: c.name, sameSite: c.sameSite, secure: c.secure, httpOnly: c.httpOnly, domain: c.domain,
  }));
}

// fetch() from the page on https://example.com.
async function pageFetch(url, init) {
  return page.evaluate(async ([url, init]) => {
    try {
      const r = await fetch(url, init);
      const text = await r.text();
      let json = null;
      try { json = JSON.parse(text); } catch (e) { /* not JSON */ }
      return { ok: true, status: r.status, json, text: text.slice(0, 500),
        setCookie: r.headers.get('set-cookie'), cookie: document.cookie };
    } catch (e) {
      return { ok: false, error: String(e) };
    }
  }, [url, init]);
}

const credentialed = { credentials: 'include', headers: { office: '1' } };

await run(out, context, page, async () => {
  switch (name) {
    case 'signin': {
      const resp = await page.goto(`${cfg.api}/data`);
      step('before_idp', { firstHop: resp ? resp.url() : null });
      await signInAtIdp('alice@mysite.com');
      step('back', { url: page.url(), body: await page.textContent('body') });
      step('cookies', { cookies: await cookiesOf(cfg.api) });
      const id = await page.goto(`${cfg.api}/.portcullis/identity`);
      step('identity', { status: id.status(), json: await id.json() });
      const lo = await page.goto(`${cfg.api}/.portcullis/logout`);
      step('logout', { status: lo.status(), cookies: await cookiesOf(cfg.api) });
      const again = await page.goto(`${cfg.api}/.portcullis/identity`);
      step('identity_after_logout', { status: again.status() });
      break;
    }
    case 'preflighted': {
      await page.goto(`${cfg.api}/`);
      await signInAtIdp('alice@mysite.com');
      step('cookies', { cookies: await cookiesOf(cfg.api) });
      await page.goto(`${cfg.pageOrigin ?? cfg.site}/page.html`);
      // The response headers as the network saw them (a page cannot read Vary itself).
      const seen = [];
      page.on('response', async (r) => {
        if (r.url() === `${cfg.api}/data`) seen.push(await r.allHeaders());
      });
      step('fetch', await pageFetch(`${cfg.api}/data`, credentialed));
      step('response_headers', { headers: seen });
      break;
    }
    case 'unauthenticated': {
      await page.goto(`${cfg.site}/page.html`);
      const first = await pageFetch(`${cfg.api}/data`, credentialed);
      step('fetch_before', first);
      if (first.ok && first.json && first.json.login) {
        // The seed's "log in and refresh": send the user to the sign-in URL the 401 named.
        await page.goto(first.json.login);
        await signInAtIdp('bob@mysite.com');
        step('back', { url: page.url() });
        await page.goto(`${cfg.site}/page.html`);
        step('fetch_after', await pageFetch(`${cfg.api}/data`, credentialed));
      }
      break;
    }
    case 'nocors': {
      await page.goto(`${cfg.site}/page.html`);
      step('fetch_nocors', await pageFetch(`${cfg.nocors}/data`, credentialed));
      step('fetch_bypass', await pageFetch(`${cfg.bypass}/data`, credentialed));
      break;
    }
    case 'worker': {
      await page.goto(`${cfg.site}/page.html`);
      step('fetch', await pageFetch(`${cfg.site}/api/set-cookie`, { headers: { office: '1' } }));
      step('cookies', { site: await cookiesOf(cfg.site), api: await cookiesOf(cfg.api) });
      break;
    }
    default:
      throw new Error(`unknown scenario ${name}`);
  }
});
