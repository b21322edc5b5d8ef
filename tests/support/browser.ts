/**
 * A real browser for tests and benchmarks: Debian's chromium (/usr/bin/chromium; nothing is
 * downloaded), started headless in its own process group with a fresh profile, driven through
 * playwright-core over CDP, and killed by its process group id when done, even after a failure.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';

export const CHROMIUM = process.env.UGRO_CHROMIUM ?? '/usr/bin/chromium';

export interface TestBrowser {
  browser: Browser;
  /** Kill chromium's whole process group and remove its profile; safe to call twice. */
  close(): Promise<void>;
}

export async function startBrowser(): Promise<TestBrowser> {
  const profile = mkdtempSync(join(tmpdir(), 'ugro-chromium-'));
  const child = spawn(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-dev-shm-usage',
      `--user-data-dir=${profile}`,
      '--remote-debugging-port=0',
      'about:blank',
    ],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    try {
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    rmSync(profile, { recursive: true, force: true });
  };
  try {
    const ws = await new Promise<string>((resolve, reject) => {
      let err = '';
      const t = setTimeout(() => reject(new Error(`chromium did not start in 30 s: ${err.slice(-500)}`)), 30_000);
      child.stderr!.on('data', (b: Buffer) => {
        err += b.toString();
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
        if (m) {
          clearTimeout(t);
          resolve(m[1]);
        }
      });
      child.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`chromium exited (${code}): ${err.slice(-500)}`));
      });
    });
    const browser = await chromium.connectOverCDP(ws);
    return { browser, close };
  } catch (e) {
    await close();
    throw e;
  }
}
