// Kubernetes data in the UI: a pull served by a pod (image with its tag, the pod, namespace
// and pod filters) and a pull that kubelet reported as failed (its message in the details).
// spec/e2e/test_ui.py feeds the real server from the fake Kubernetes API and a real agent.
//
// usage: node kube.mjs '{"url", "okImage", "okPod": "ns/name", "failedImage", "failedPod",
//                        "shots", "chromium"?}'

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fail, phase, runScript, until } from './lib.mjs';

const cfg = JSON.parse(process.argv[2]);
mkdirSync(cfg.shots, { recursive: true });
await runScript(cfg, 'kube-failure.png', async (browser, page) => {
  await page.goto(cfg.url, { waitUntil: 'domcontentloaded' });
  await until('live', async () => (await page.locator('.conn').getAttribute('data-state')) === 'live', 15000);

  // The correlated pull: image with its tag, and its pod in the pods column.
  const tag = cfg.okImage.split(':').pop();
  const okRow = page.locator('.pull-row', { hasText: cfg.okPod }).first();
  await okRow.waitFor({ state: 'visible', timeout: 30000 });
  const shownTag = await okRow.locator('.image .tag').textContent();
  if (shownTag !== `:${tag}`) fail(`tag shown as "${shownTag}", want ":${tag}"`);
  phase('correlated', { pods: await okRow.locator('.c-pods').textContent() });

  // kubelet's "Successfully pulled ... in 8.25s" shows in the good pull's details.
  await okRow.click();
  const okDetails = page.locator('[data-testid=details]');
  await until('kubelet duration', async () => /pulled in 8s/.test((await okDetails.locator('[data-testid=d-kubelet]').textContent()) ?? ''), 15000);
  phase('kubelet', { text: await okDetails.locator('[data-testid=d-kubelet]').textContent() });
  await okDetails.getByLabel('Close details').click();

  // The kubelet's failure: a row in state failed, the message in the details.
  const failedRow = page.locator('.pull-row[data-state=failed]', { hasText: cfg.failedImage.split('/').pop() }).first();
  await failedRow.waitFor({ state: 'visible', timeout: 30000 });
  const id = await failedRow.getAttribute('data-pull-id');
  await failedRow.click();
  const details = page.locator('[data-testid=details]');
  const box = details.locator('[data-testid=pull-error]');
  await box.waitFor({ state: 'visible', timeout: 5000 });
  const api = await page.evaluate(async (pid) => (await (await fetch(`api/v1/pulls/${encodeURIComponent(pid)}`)).json()).pull, id);
  const text = await box.textContent();
  if (!api.error || !text.includes(api.error.message)) fail(`error box "${text}" does not show ${JSON.stringify(api.error)}`);
  if (!/Failed to pull image/.test(text)) fail(`error box "${text}" lacks the kubelet's message`);
  const pods = await details.locator('ul.pods li').allTextContents();
  if (!pods.some((p) => p.includes(cfg.failedPod))) fail(`details list pods ${JSON.stringify(pods)}, want ${cfg.failedPod}`);
  await page.screenshot({ path: join(cfg.shots, 'kubelet-failed-details-1280x800.png') });
  phase('failed', { reason: api.error.reason, pods });
  await details.getByLabel('Close details').click();

  // Namespace and pod filters go through the pods, and stay in the URL.
  const count = page.locator('[data-testid=pull-count]');
  const [ns, podName] = cfg.okPod.split('/');
  await page.getByLabel('Filter by namespace').fill(ns);
  await page.getByLabel('Filter by pod').fill(podName);
  await until('only the correlated pull', async () => (await count.textContent()).startsWith('1 of '), 5000);
  if (!(await okRow.isVisible())) fail('the correlated pull is filtered out');
  const url = new URL(page.url());
  if (url.searchParams.get('ns') !== ns || url.searchParams.get('pod') !== podName) fail(`filters not in URL: ${page.url()}`);
  // A shared link opens the same view.
  const again = await browser.context.newPage();
  await again.goto(page.url());
  await until('the shared view', async () => (await again.getByLabel('Filter by namespace').inputValue()) === ns &&
    (await again.locator('[data-testid=pull-count]').textContent()).startsWith('1 of '), 10000);
  await again.close();
  await page.getByLabel('Filter by namespace').fill('no-such-namespace');
  await until('nothing', async () => (await count.textContent()).startsWith('0 of '), 5000);
  phase('filters');
  phase('done');
});
