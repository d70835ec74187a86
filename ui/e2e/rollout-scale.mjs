// A rollout on 5000 nodes (spec/e2e/test_ui_rollouts.py feeds the real server agent reports of
// 5000 nodes pulling one image, a few hundred progressing each second). Measures the first
// render of the Rollouts view (navigation to the row being painted from the server's
// summaries), the frame times while updates (and the stream's snapshot of every pull) come in,
// and opens the rollout: every node's pull in a virtualised list.
//
// usage: node rollout-scale.mjs '{"url", "image", "nodes", "shots", "chromium"?}'

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fail, phase, runScript, until } from './lib.mjs';

const cfg = JSON.parse(process.argv[2]);
mkdirSync(cfg.shots, { recursive: true });
await runScript(cfg, 'rollout-5000-failure.png', async (browser, page) => {
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const row = page.locator(`[data-testid=rollout-row][data-image="${cfg.image}"]`);
  const t0 = Date.now();
  await page.goto(cfg.url + '?view=rollouts', { waitUntil: 'domcontentloaded' });
  // The first render: the row painted with every node counted.
  await until('the rollout row with every node', async () => {
    const label = await row.locator('[data-testid=rollout-bar]').getAttribute('aria-label', { timeout: 100 });
    return label && label.startsWith(`${cfg.nodes} nodes`);
  }, 30000, 20);
  const firstRender = Date.now() - t0;
  // The same from the page's own clock: navigation start to now (after the paint).
  const nav = await page.evaluate(() =>
    new Promise((r) =>
      requestAnimationFrame(() => {
        // Where the time went: the page's scripts, the summaries' request (the pulls' REST
        // answer for a UI that paints from it).
        const res = performance.getEntriesByType('resource');
        const times = (e) => (e ? [Math.round(e.requestStart), Math.round(e.responseStart), Math.round(e.responseEnd)] : null);
        const pulls = res.find((e) => e.name.endsWith('api/v1/pulls'));
        const summaries = res.find((e) => e.name.endsWith('types=rollout.summary'));
        const nav = performance.getEntriesByType('navigation')[0];
        r({
          paint: Math.round(performance.now()),
          domContentLoaded: Math.round(nav.domContentLoadedEventEnd),
          summariesRequest: times(summaries),
          pullsRequest: times(pulls),
          pullsBytes: pulls ? pulls.encodedBodySize : null,
        });
      }),
    ),
  );
  phase('first-render', { ms: firstRender, page: nav });

  // Frame intervals over 5 s while summaries and progress stream in.
  const frames = await page.evaluate(async () => {
    const times = [];
    const end = performance.now() + 5000;
    await new Promise((resolve) => {
      const step = (t) => {
        times.push(t);
        if (t < end) requestAnimationFrame(step);
        else resolve();
      };
      requestAnimationFrame(step);
    });
    const d = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
    return { frames: times.length, fps: (times.length - 1) / ((times.at(-1) - times[0]) / 1000), p50: d[Math.floor(d.length / 2)], p95: d[Math.floor(d.length * 0.95)], max: d.at(-1) };
  });
  phase('frames', frames);
  await page.screenshot({ path: join(cfg.shots, 'rollout-5000-1280x800.png') });

  // Opening it: 5000 node rows, virtualised; scrolling stays smooth.
  const t1 = Date.now();
  await row.locator('.rollout-open').click();
  const detail = page.locator('[data-testid=rollout-detail]');
  await detail.locator('.pull-row').first().waitFor({ state: 'visible', timeout: 15000 });
  const openMs = Date.now() - t1;
  const rowsInDom = await detail.locator('.pull-row').count();
  const scroll = await page.evaluate(async () => {
    const list = document.querySelector('[data-testid=rollout-detail] .vlist');
    const times = [];
    const end = performance.now() + 3000;
    let y = 0;
    await new Promise((resolve) => {
      const step = (t) => {
        times.push(t);
        y += 240;
        list.scrollTop = y % Math.max(1, list.scrollHeight - list.clientHeight);
        if (t < end) requestAnimationFrame(step);
        else resolve();
      };
      requestAnimationFrame(step);
    });
    const d = times.slice(1).map((t, i) => t - times[i]).sort((a, b) => a - b);
    return { fps: (times.length - 1) / ((times.at(-1) - times[0]) / 1000), p95: d[Math.floor(d.length * 0.95)] };
  });
  const stalledFirst = await detail.locator('.pull-row').first().getAttribute('data-state');
  await page.screenshot({ path: join(cfg.shots, 'rollout-5000-open-1280x800.png') });
  phase('open', { ms: openMs, rowsInDom, scroll, firstState: stalledFirst });
  if (errors.length) fail(`page errors: ${errors.join(' | ')}`);
  phase('done');
});
