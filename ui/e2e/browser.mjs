// Browser test of the Pulltrace UI: Debian's Chromium driven by playwright-core against a
// real pulltrace-server fed by a real agent (spec/e2e/test_ui.py starts everything and
// reacts to the phases this script prints as JSON lines on stdout).
//
// usage: node browser.mjs '<json config>'
//   {url, image, layers: [digest...], shots: dir, chromium?: path}
// Phases printed: {"phase": "..."}; the script waits for the page to show what each
// phase expects and exits non-zero with {"error": ...} when it does not.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fail, launch, out, phase, until } from './lib.mjs';

const cfg = JSON.parse(process.argv[2]);
mkdirSync(cfg.shots, { recursive: true });
let browser;
let context;
let exitCode = 0;
try {
  browser = await launch(cfg.chromium);
  context = browser.context;
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  await page.goto(cfg.url, { waitUntil: 'domcontentloaded' });
  const conn = page.locator('.conn');
  const connState = () => conn.getAttribute('data-state');
  await until('the connection to be live', async () => (await connState()) === 'live', 15000);
  phase('live');

  // 1. The pull appears.
  const row = page.locator('.pull-row', { hasText: cfg.image }).first();
  await row.waitFor({ state: 'visible', timeout: 30000 });
  const pullId = await row.getAttribute('data-pull-id');
  phase('pull-visible', { pullId });

  // 2. Its bar moves.
  const bar = () => row.locator('[role=progressbar]').getAttribute('aria-valuenow').then((v) => (v == null ? null : Number(v)));
  // Column boxes, to check that changing figures never move the layout.
  const boxes = () =>
    row.evaluate((el) =>
      ['.c-image', '.c-bar', '.c-pct', '.c-bytes', '.c-eta', '.c-state'].map((c) => {
        const r = el.querySelector(c).getBoundingClientRect();
        return [c, Math.round(r.x), Math.round(r.width)].join(':');
      }).join(' '),
    );
  const p0 = await until('a known percentage', async () => ((await bar()) != null ? { v: await bar() } : null), 15000);
  const b0 = await boxes();
  const p1 = await until('the bar to move', async () => {
    const v = await bar();
    return v != null && v > p0.v ? { v } : null;
  }, 20000);
  const b1 = await boxes();
  if (b0 !== b1) fail(`the row's columns moved as figures changed: ${b0} -> ${b1}`);
  // The header counts it (as active, or stalled between two containerd offset updates).
  const counted = await until('the header to count the pull', async () => {
    const a = Number(await page.locator('[data-testid=stat-active] .stat-value').textContent());
    const s = Number(await page.locator('[data-testid=stat-stalled] .stat-value').textContent());
    return a + s >= 1 ? { a, s } : null;
  }, 5000);
  const nodes = await page.locator('[data-testid=stat-nodes] .stat-value').textContent();
  if (nodes !== '1/1') fail(`header shows ${nodes} nodes reporting`);
  phase('bar-moved', { from: p0.v, to: p1.v, header: counted });
  await page.screenshot({ path: join(cfg.shots, 'main-1280x800.png') });

  // Filters are applied and kept in the URL.
  const imageFilter = page.getByLabel('Filter by image');
  await imageFilter.fill('no-such-image-xyz');
  await until('the filter to hide the pull', async () => (await page.locator('.pull-row').count()) === 0, 5000);
  if (!page.url().includes('image=no-such-image-xyz')) fail(`filter not in URL: ${page.url()}`);
  await imageFilter.fill(cfg.image.split('/').pop());
  await row.waitFor({ state: 'visible', timeout: 5000 });
  await imageFilter.fill('');
  phase('filters');

  // 3. Its layers expand.
  await row.click();
  const details = page.locator('[data-testid=details]');
  await details.waitFor({ state: 'visible', timeout: 5000 });
  if (!page.url().includes('pull=')) fail(`selected pull not in URL: ${page.url()}`);
  const layerRows = details.locator('table.layers tbody tr');
  await until(`${cfg.layers.length} layers`, async () => (await layerRows.count()) === cfg.layers.length, 10000);
  const shown = await layerRows.evaluateAll((trs) =>
    trs.map((tr) => ({ digest: tr.getAttribute('data-digest'), short: tr.querySelector('td .mono').textContent, state: tr.getAttribute('data-state') })),
  );
  for (const l of shown) {
    if (!cfg.layers.includes(l.digest)) fail(`unexpected layer ${l.digest}`);
    const hex = l.digest.split(':')[1];
    if (l.short !== hex.slice(0, 12)) fail(`layer digest shown as "${l.short}", want "${hex.slice(0, 12)}"`);
    if (!['waiting', 'downloading', 'stalled', 'done', 'cached'].includes(l.state)) fail(`layer state ${l.state}`);
  }
  await until('a downloading layer', async () => (await details.locator('tr[data-state=downloading]').count()) > 0, 10000);
  phase('layers', { layers: shown });
  await page.screenshot({ path: join(cfg.shots, 'details-1280x800.png') });

  // The same page on a phone, dark.
  const phone = await context.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.emulateMedia({ colorScheme: 'dark' });
  await phone.goto(cfg.url, { waitUntil: 'domcontentloaded' });
  await phone.locator('.pull-row', { hasText: cfg.image }).first().waitFor({ state: 'visible', timeout: 15000 });
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) fail(`the phone layout scrolls sideways by ${overflow}px`);
  await phone.screenshot({ path: join(cfg.shots, 'main-phone-dark.png') });
  await phone.locator('.pull-row', { hasText: cfg.image }).first().click();
  await phone.locator('[data-testid=details] table.layers').waitFor({ state: 'visible', timeout: 10000 });
  await phone.screenshot({ path: join(cfg.shots, 'details-phone-dark.png') });
  await phone.close();
  phase('phone');

  // 4. The server restarts: "reconnecting", then live data again.
  phase('restart-server');
  await until('the reconnecting state', async () => {
    const s = await connState();
    return s === 'reconnecting' || s === 'offline';
  }, 20000, 50);
  const label = await conn.textContent();
  if (!/reconnecting|offline/i.test(label)) fail(`connection badge says "${label}"`);
  await page.screenshot({ path: join(cfg.shots, 'reconnecting-1280x800.png') });
  phase('reconnecting', { label });
  await until('live again', async () => (await connState()) === 'live', 40000);
  await until('the pull back from the new server', async () => (await row.count()) > 0 && (await bar()) != null, 30000);
  const q0 = await bar();
  const q1 = await until('the bar to move after the restart', async () => {
    const v = await bar();
    return v != null && v > q0 ? { v } : null;
  }, 20000);
  phase('live-again', { from: q0, to: q1.v });

  // 5. A failed pull shows its message (the agent stops: the server loses the node).
  phase('stop-agent');
  const failedRow = page.locator(`.pull-row[data-pull-id="${pullId}"]`);
  await until('the pull to fail', async () => {
    const s = await failedRow.getAttribute('data-state');
    return s === 'failed' || s === 'lost';
  }, 40000, 200);
  await failedRow.click();
  const box = details.locator('[data-testid=pull-error]');
  await box.waitFor({ state: 'visible', timeout: 5000 });
  const text = await box.textContent();
  const api = await page.evaluate(async (id) => (await (await fetch(`api/v1/pulls/${encodeURIComponent(id)}`)).json()).pull, pullId);
  if (!api.error) fail('the API shows no error for the failed pull');
  if (!text.includes(api.error.message) || !text.includes(api.error.reason)) {
    fail(`error box "${text}" does not show ${JSON.stringify(api.error)}`);
  }
  const failedCount = await page.locator('[data-testid=stat-failed] .stat-value').textContent();
  if (Number(failedCount) < 1) fail(`header shows ${failedCount} failed pulls`);
  await page.screenshot({ path: join(cfg.shots, 'failed-details-1280x800.png') });
  phase('failed', { apiError: api.error, shown: text });

  if (consoleErrors.length) {
    // Failed requests while the server is down are expected; anything else is a bug.
    const unexpected = consoleErrors.filter((m) => !/Failed to load resource|ERR_CONNECTION_REFUSED|net::/.test(m));
    if (unexpected.length) fail(`console errors: ${unexpected.join(' | ')}`);
  }
  phase('done');
} catch (e) {
  exitCode = 1;
  out({ error: String(e && e.stack ? e.stack : e) });
  try {
    const p = context?.pages()[0];
    if (p) await p.screenshot({ path: join(cfg.shots, 'failure.png') });
  } catch {
    /* best effort */
  }
} finally {
  await browser?.close();
}
process.exit(exitCode);
