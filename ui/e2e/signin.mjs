// Browser test of the sign-in panel (PULLTRACE_READ_AUTH=kubernetes, docs/security.md):
// Debian's Chromium driven by playwright-core against a real pulltrace-server that checks
// tokens with the fake Kubernetes API server (spec/e2e/test_ui_auth.py starts everything).
//
// usage: node signin.mjs '<json config>'
//   {url, image, token, deniedToken, shots: dir, chromium?: path}
// Without a token the page explains how to get one; a token whose user may not read says
// so; a good token shows the pulls, live. Phases printed: {"phase": "..."}.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fail, phase, runScript, until } from './lib.mjs';

const cfg = JSON.parse(process.argv[2]);
mkdirSync(cfg.shots, { recursive: true });
await runScript(cfg, 'signin-failure.png', async (browser, page) => {
  const heading = page.locator('.signin h2');
  const title = async () => ((await heading.count()) ? (await heading.textContent()).trim() : null);

  await page.goto(cfg.url, { waitUntil: 'domcontentloaded' });
  await until('the sign-in panel', async () => (await title()) === 'Sign in to Pulltrace', 15000);
  const hint = await page.locator('.signin').textContent();
  if (!hint.includes('pulls.pulltrace.io') || !hint.includes('kubectl create token') || !hint.includes('kubectl pulltrace'))
    fail(`the sign-in panel does not explain how to get in: ${hint}`);
  if ((await page.locator('.pull-row').count()) !== 0) fail('pulls shown without a token');
  await page.screenshot({ path: join(cfg.shots, 'signin.png') });
  // Opened on the Rollouts view, which reads the server's summaries first: the same panel.
  const rollouts = await browser.context.newPage();
  await rollouts.goto(cfg.url + '?view=rollouts', { waitUntil: 'domcontentloaded' });
  const rHeading = rollouts.locator('.signin h2');
  await until('the sign-in panel on the Rollouts view', async () =>
    (await rHeading.count()) > 0 && (await rHeading.textContent()).trim() === 'Sign in to Pulltrace', 15000);
  await rollouts.close();
  phase('asked-to-sign-in');

  // A token the API server accepts, whose user RBAC does not allow to read.
  await page.locator('#signin-token').fill(cfg.deniedToken);
  await page.locator('.signin button[type=submit]').click();
  await until('the refusal', async () => (await title()) === 'Not allowed to read', 15000);
  const refusal = await page.locator('.signin').textContent();
  if (!refusal.includes('may not get pulls.pulltrace.io')) fail(`the refusal does not say why: ${refusal}`);
  if ((await page.locator('.signin button', { hasText: 'Sign out' }).count()) !== 1) fail('no way to sign out');
  await page.screenshot({ path: join(cfg.shots, 'signin-denied.png') });
  phase('denied');

  // The reader's token: the pulls, live through the event stream (the cookie goes along).
  await page.locator('#signin-token').fill(`Bearer ${cfg.token}\n`);
  await page.locator('.signin button[type=submit]').click();
  await until('the live connection', async () => (await page.locator('.conn').getAttribute('data-state')) === 'live', 20000);
  await page.locator('.pull-row', { hasText: cfg.image }).first().waitFor({ state: 'visible', timeout: 20000 });
  if ((await heading.count()) !== 0) fail('the sign-in panel stayed');
  await page.screenshot({ path: join(cfg.shots, 'signin-ok.png') });
  phase('signed-in');
});
