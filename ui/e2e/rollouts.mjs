// The Rollouts, charts, phases and History views against a real cluster on one machine
// (spec/e2e/test_ui_rollouts.py): one image rolling out to three nodes, one of them stalled
// until this script says it has seen the stall ("stalled-seen"; the test then thaws it and
// posts kubelet's Pulled events).
//
// usage: node rollouts.mjs '{"url", "image", "nodes": [...], "stalledNode", "cachedLayer",
//                            "shots", "chromium"?}'

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fail, phase, runScript, until } from './lib.mjs';

const cfg = JSON.parse(process.argv[2]);
mkdirSync(cfg.shots, { recursive: true });
const N = cfg.nodes.length;
await runScript(cfg, 'rollouts-failure.png', async (browser, page) => {
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(cfg.url, { waitUntil: 'domcontentloaded' });
  await until('live', async () => (await page.locator('.conn').getAttribute('data-state')) === 'live', 15000);

  // The Rollouts view by its key, kept in the URL.
  await page.keyboard.press('2');
  await until('view=rollouts in the URL', async () => page.url().includes('view=rollouts'), 5000);
  const row = page.locator(`[data-testid=rollout-row][data-image="${cfg.image}"]`);
  await row.waitFor({ state: 'visible', timeout: 30000 });
  const count = async (kind) => Number((await row.locator(`[data-testid=count-${kind}]`).textContent()).split(' ')[0]);
  await until(`${N} nodes in the rollout`, async () => {
    const segs = await Promise.all(['done', 'pulling', 'stalled', 'failed', 'waiting'].map(count));
    return segs.reduce((a, b) => a + b, 0) === N;
  }, 30000);
  phase('rollout-row', { label: await row.locator('[data-testid=rollout-bar]').getAttribute('aria-label') });

  // The frozen node: stalled in the bar and first among the slowest nodes.
  await until('a stalled node', async () => (await count('stalled')) >= 1, 60000);
  const slow = await row.locator('.r-slow .slow').first().textContent();
  if (!slow.includes(cfg.stalledNode)) fail(`slowest nodes start with "${slow}", want ${cfg.stalledNode}`);
  const chart = page.locator('[data-testid=throughput-chart]');
  await until('throughput samples', async () => Number(await chart.getAttribute('data-points')) >= 5, 20000);
  await page.screenshot({ path: join(cfg.shots, 'rollouts-1280x800.png') });
  phase('stalled-seen', { slowest: slow });

  await until('every node done', async () => (await count('done')) === N, 180000);
  const eta = await row.locator('.r-eta').textContent();
  if (eta !== 'done') fail(`a finished rollout's ETA reads "${eta}"`);
  phase('rollout-done');

  // Opening it lists every node's pull with its own bar.
  await row.locator('.rollout-open').click();
  const detail = page.locator('[data-testid=rollout-detail]');
  await detail.waitFor({ state: 'visible', timeout: 5000 });
  if (!page.url().includes('rollout=')) fail(`open rollout not in the URL: ${page.url()}`);
  await until(`${N} node rows`, async () => (await detail.locator('.pull-row').count()) === N, 10000);
  const nodes = (await detail.locator('.pull-row .c-node').allTextContents()).sort();
  if (JSON.stringify(nodes) !== JSON.stringify([...cfg.nodes].sort())) fail(`node rows ${nodes}`);
  if ((await detail.locator('.pull-row [role=progressbar]').count()) !== N) fail('a node row without its bar');
  await page.screenshot({ path: join(cfg.shots, 'rollout-open-1280x800.png') });
  phase('rollout-open', { nodes });

  // The stalled node's pull, watched while it moved: its speed over time.
  await detail.locator('.pull-row', { hasText: cfg.stalledNode }).click();
  const d = page.locator('[data-testid=details]');
  await d.waitFor({ state: 'visible', timeout: 5000 });
  await d.locator('[data-testid=speed-chart]').waitFor({ state: 'visible', timeout: 5000 });
  const speedPoints = Number(await d.locator('[data-testid=speed-chart]').getAttribute('data-points'));
  const stallNoted = (await d.locator('ol.events li').allTextContents()).some((e) => e.includes('stalled'));
  if (!stallNoted) fail('the stalled pull has no stall among its events');
  const stalledId = await d.getAttribute('data-pull-id');

  // The first node's pull (node-a, where the base layer was cached): phases from kubelet's
  // Pulled, the layer timeline with the cached layer, its past.
  await detail.locator('.pull-row', { hasText: cfg.nodes[0] }).click();
  await until(`details of ${cfg.nodes[0]}`, async () => (await d.getAttribute('data-pull-id'))?.startsWith(cfg.nodes[0] + '/'), 5000);
  const phaseText = async (k) => (await d.locator(`[data-testid=phase-${k}] dd`).textContent()).trim();
  await until("kubelet's phases", async () => /^\d+s$/.test(await phaseText('waiting')) && /^\d+s$/.test(await phaseText('unpacking')), 30000);
  const phases = { waiting: await phaseText('waiting'), downloading: await phaseText('downloading'), unpacking: await phaseText('unpacking') };
  if (!/^\d+s$/.test(phases.downloading)) fail(`downloading reads ${phases.downloading}`);
  if (phases.waiting !== '2s' && phases.waiting !== '1s') fail(`waiting reads ${phases.waiting}, kubelet said 1.5 s more`);
  const tl = d.locator('[data-testid=layer-timeline]');
  const cached = tl.locator(`li[data-state=cached]`);
  if ((await cached.count()) !== 1) fail(`${await cached.count()} cached layers in the timeline, want 1`);
  if ((await tl.locator('.tl-bar').count()) !== 2) fail('the two downloaded layers are not bars on the timeline');
  const events = await d.locator('ol.events li').allTextContents();
  if (!events.some((e) => e.includes('pull started'))) fail(`no start in the events: ${events}`);
  if (!events.some((e) => e.includes('kubelet: Successfully pulled'))) fail(`no kubelet event in the events: ${events}`);
  await page.screenshot({ path: join(cfg.shots, 'rollout-details-1280x800.png') });
  phase('details', { phases, events: events.length, speedPoints });
  await d.getByLabel('Close details').click();

  // History: the finished pulls of the image, with their phases, and the percentile chart.
  await page.keyboard.press('3');
  const repoTag = cfg.image.split('/').slice(1).join('/'); // without the registry host
  await page.getByLabel('Filter by image').fill(repoTag);
  const hist = page.locator('[data-testid=history-table] tbody tr');
  await until(`${N} finished pulls in the history`, async () => (await hist.count()) === N, 20000);
  await page.locator('[data-testid=percentile-chart]').waitFor({ state: 'visible', timeout: 20000 });
  const stats = await page.locator('[data-testid=stats-table] tbody tr').first().textContent();
  if (!stats.includes(repoTag.split(':')[0])) fail(`stats row "${stats}"`);
  if (!page.url().includes('view=history')) fail(`history not in the URL: ${page.url()}`);
  await page.screenshot({ path: join(cfg.shots, 'history-1280x800.png') });
  phase('history', { rows: await hist.count() });

  // A page opened now, straight on the stalled node's pull: its details show the past the
  // server kept. The stall happened before this page existed, and the pull's record does not
  // tell it: only the server's events do.
  const late = await browser.context.newPage();
  late.on('pageerror', (e) => errors.push(String(e)));
  await late.goto(cfg.url + '?pull=' + encodeURIComponent(stalledId), { waitUntil: 'domcontentloaded' });
  const lateEvents = late.locator('[data-testid=details] ol.events li');
  const want = ['pull started', 'pull stalled', 'pull completed', 'kubelet: Successfully pulled'];
  let past = [];
  await until('the past of a pull opened late', async () => {
    past = await lateEvents.allTextContents();
    return want.every((w) => past.some((e) => e.includes(w)));
  }, 30000).catch((e) => fail(`${e.message}; its events: ${JSON.stringify(past)}`));
  const fromServer = await late.locator('[data-testid=details] ol.events li[data-event-id]').count();
  if (fromServer < want.length) fail(`${fromServer} events with the server's ids: ${past}`);
  await late.screenshot({ path: join(cfg.shots, 'details-late-1280x800.png') });
  await late.close();
  phase('late-details', { events: past.length });

  // Phone, dark: the rollouts do not scroll sideways.
  const phone = await browser.context.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.emulateMedia({ colorScheme: 'dark' });
  await phone.goto(cfg.url + '?view=rollouts', { waitUntil: 'domcontentloaded' });
  await phone.locator(`[data-testid=rollout-row][data-image="${cfg.image}"]`).waitFor({ state: 'visible', timeout: 15000 });
  const wide = await phone.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  if (wide > 0) fail(`the phone layout scrolls sideways by ${wide}px`);
  await phone.screenshot({ path: join(cfg.shots, 'rollouts-phone-dark.png') });
  phase('phone');
  if (errors.length) fail(`page errors: ${errors.join(' | ')}`);
  phase('done');
});
