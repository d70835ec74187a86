// The screenshots of docs/ui.md, taken from a running demo (bash scripts/demo.sh) while its
// rollout has a stalled node:
//
//   node ui/e2e/demo-shots.mjs http://127.0.0.1:8080/ OUTDIR
//   pngquant --quality 60-90 --strip OUTDIR/*.png      (then copy the ones docs/ui.md uses)
//
// It takes about a minute and a half (the History shot waits for pulls to finish).
import { launch, sleep, until } from './lib.mjs';
const [url, dir] = process.argv.slice(2);
const b = await launch('/usr/bin/chromium', { viewport: { width: 1280, height: 760 } });
const page = b.context.pages()[0] ?? (await b.context.newPage());
await page.goto(url + '?view=rollouts', { waitUntil: 'domcontentloaded' });
const row = page.locator('[data-testid=rollout-row]', { hasText: 'demo/api' }).first();
await until('stall', async () => Number((await row.locator('[data-testid=count-stalled]').textContent()).split(' ')[0]) >= 1, 120000, 500);
await sleep(4000);
const dismissAll = async (p) => { for (const b of await p.locator('.alerts button[aria-label^="Dismiss alert"]').all()) await b.click().catch(() => undefined); };
await dismissAll(page);
await page.screenshot({ path: `${dir}/demo-rollouts.png` });
await row.locator('.rollout-open').click();
await sleep(1500);
await dismissAll(page);
await page.screenshot({ path: `${dir}/demo-rollout-open.png` });
await page.locator('[data-testid=rollout-detail] .pull-row', { hasText: 'demo-node' }).first().click();
await sleep(1500);
await dismissAll(page);
await page.screenshot({ path: `${dir}/demo-details.png` });
await page.locator('[data-testid=details]').evaluate((e) => (e.querySelector('.details-body').scrollTop = 520));
await sleep(500);
await page.screenshot({ path: `${dir}/demo-details-2.png` });
await page.goto(url, { waitUntil: 'domcontentloaded' });
await sleep(4000);
await dismissAll(page);
await page.screenshot({ path: `${dir}/demo-pulls.png` });
await sleep(40000);
await page.goto(url + '?view=history', { waitUntil: 'domcontentloaded' });
await sleep(4000);
await dismissAll(page);
await page.screenshot({ path: `${dir}/demo-history.png` });
const phone = await b.context.newPage();
await phone.setViewportSize({ width: 390, height: 844 });
await phone.emulateMedia({ colorScheme: 'dark' });
await phone.goto(url + '?view=rollouts', { waitUntil: 'domcontentloaded' });
await sleep(5000);
await phone.screenshot({ path: `${dir}/demo-rollouts-phone.png` });
await b.close();
