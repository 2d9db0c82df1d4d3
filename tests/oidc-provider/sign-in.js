// A person at a browser: opens URL in a real headless Chromium, signs in on
// the provider's own pages (server.js's development pages) as LOGIN, and
// consents, following every page until none asks for anything more; or,
// with --deny, signs in and then presses `[ Cancel ]` on the consent page.
//
// Usage: node sign-in.js URL LOGIN [--deny]
// Prints the text of the last page on stdout; exits 1 on any failure.
// Only loopback requests leave the browser (the pages' web font is not
// fetched), so a run never depends on the network.

import { chromium } from 'playwright-core';

const [url, login, mode] = process.argv.slice(2);
if (!url || !login || (mode !== undefined && mode !== '--deny')) {
  console.error('usage: node sign-in.js URL LOGIN [--deny]');
  process.exit(2);
}
const deny = mode === '--deny';

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  await page.route('**/*', (route) => {
    const host = new URL(route.request().url()).hostname;
    return host === '127.0.0.1' || host === 'localhost' ? route.continue() : route.abort();
  });
  await page.goto(url);
  let signedIn = false;
  // Each page asks one thing: the device code confirmation, the login form,
  // the consent. Answer until a page asks nothing (success or error page).
  const navigate = (action) => Promise.all([page.waitForNavigation({ waitUntil: 'load' }), action]);
  for (let step = 0; step < 10; step += 1) {
    if (await page.locator('input[name=login]').count()) {
      await page.fill('input[name=login]', login);
      await page.fill('input[name=password]', 'any password');
      await navigate(page.click('button[type=submit]'));
      signedIn = true;
    } else if (deny && signedIn && (await page.locator('a', { hasText: 'Cancel' }).count())) {
      await navigate(page.click('a:has-text("Cancel")'));
    } else if (await page.locator('button[type=submit]').count()) {
      await navigate(page.click('button[type=submit]'));
    } else {
      break;
    }
  }
  process.stdout.write(`${await page.innerText('body')}\n`);
} catch (err) {
  console.error(`sign-in failed: ${err.message}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
