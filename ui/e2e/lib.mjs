// Shared by the browser scripts: Debian's Chromium with a fresh profile, and polling.
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
export const phase = (name, extra = {}) => out({ phase: name, t: Date.now(), ...extra });
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function fail(msg) {
  throw new Error(msg);
}

/** Polls fn until it returns something truthy; fails after timeoutMs. */
export async function until(what, fn, timeoutMs, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) fail(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await sleep(everyMs);
  }
}

/** A persistent context on a fresh --user-data-dir; close() also removes the profile. */
export async function launch(executablePath, options = {}) {
  const profile = mkdtempSync(join(tmpdir(), 'pt-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: executablePath || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 800 },
    colorScheme: 'light',
    ...options,
  });
  return {
    context,
    async close() {
      await context.close().catch(() => undefined);
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Runs a browser script: launches Chromium, calls body(browser, page), prints an `error` line
 * (and saves `failureShot` in cfg.shots) when it throws, closes the browser and exits 0 or 1.
 */
export async function runScript(cfg, failureShot, body) {
  let browser;
  let page;
  let exitCode = 0;
  try {
    browser = await launch(cfg.chromium);
    page = browser.context.pages()[0] ?? (await browser.context.newPage());
    await body(browser, page);
  } catch (e) {
    exitCode = 1;
    out({ error: String(e && e.stack ? e.stack : e) });
    await page?.screenshot({ path: `${cfg.shots}/${failureShot}` }).catch(() => undefined);
  } finally {
    await browser?.close();
  }
  process.exit(exitCode);
}
