// Many pulls: the UI against a real pulltrace-server holding thousands of pulls while
// hundreds of them progress every second (spec/e2e/test_ui.py feeds it agent reports).
// Checks the list is virtualised, grouping and filtering work at that size, and measures
// how smooth the page stays (frame intervals while updates stream in and the list scrolls).
//
// usage: node scale.mjs '{"url", "total", "nodes", "shots", "chromium"?}'

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fail, phase, runScript, until } from './lib.mjs';

const cfg = JSON.parse(process.argv[2]);
mkdirSync(cfg.shots, { recursive: true });
await runScript(cfg, 'scale-failure.png', async (browser, page) => {
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const t0 = Date.now();
  await page.goto(cfg.url, { waitUntil: 'domcontentloaded' });
  const count = page.locator('[data-testid=pull-count]');
  await until(`${cfg.total} pulls`, async () => (await count.textContent()).startsWith(`${cfg.total} pulls`), 30000);
  await until('live', async () => (await page.locator('.conn').getAttribute('data-state')) === 'live', 10000);
  phase('loaded', { ms: Date.now() - t0 });

  const rowsInDom = await page.locator('.pull-row').count();
  if (rowsInDom > 80) fail(`${rowsInDom} rows in the DOM for ${cfg.total} pulls: the list is not virtualised`);
  const firstState = await page.locator('.pull-row').first().getAttribute('data-state');
  if (firstState !== 'pulling' && firstState !== 'stalled') fail(`first row is ${firstState}, active pulls must come first`);

  // Frame intervals over 5 s while updates stream in and the list scrolls.
  const frames = await page.evaluate(async () => {
    const list = document.querySelector('.vlist');
    const times = [];
    const end = performance.now() + 5000;
    let y = 0;
    await new Promise((resolve) => {
      const step = (t) => {
        times.push(t);
        y += 120;
        list.scrollTop = y % (list.scrollHeight - list.clientHeight);
        if (t < end) requestAnimationFrame(step);
        else resolve();
      };
      requestAnimationFrame(step);
    });
    const d = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
    return {
      frames: times.length,
      fps: (times.length - 1) / ((times.at(-1) - times[0]) / 1000),
      p50: d[Math.floor(d.length / 2)],
      p95: d[Math.floor(d.length * 0.95)],
      max: d.at(-1),
    };
  });
  phase('frames', frames);
  const rowsWhileScrolling = await page.locator('.pull-row').count();
  if (rowsWhileScrolling > 80) fail(`${rowsWhileScrolling} rows in the DOM after scrolling`);

  // The end of the list: completed pulls.
  await page.evaluate(() => {
    const l = document.querySelector('.vlist');
    l.scrollTop = l.scrollHeight;
  });
  await until('completed rows at the bottom', async () => (await page.locator('.pull-row').last().getAttribute('data-state')) === 'completed', 5000);
  await page.screenshot({ path: join(cfg.shots, 'scale-bottom.png') });

  // Grouping by node: one heading per node.
  await page.getByLabel('Group pulls by').selectOption('node');
  await page.evaluate(() => (document.querySelector('.vlist').scrollTop = 0));
  await until('group headings', async () => (await page.locator('.group-row').count()) > 0, 5000);
  const firstGroup = await page.locator('.group-row .group-meta').first().textContent();
  if (!/pulls/.test(firstGroup)) fail(`group heading reads "${firstGroup}"`);
  if (!page.url().includes('group=node')) fail(`grouping not in URL: ${page.url()}`);
  await page.screenshot({ path: join(cfg.shots, 'scale-grouped.png') });

  // Filtering one node out of many.
  const perNode = cfg.total / cfg.nodes;
  await page.getByLabel('Filter by node').fill(cfg.filterNode);
  await until(`${perNode} of ${cfg.total}`, async () => (await count.textContent()).startsWith(`${perNode} of ${cfg.total}`), 5000);
  phase('filtered', { text: await count.textContent() });
  if (errors.length) fail(`page errors: ${errors.join(' | ')}`);
  phase('done');
});
