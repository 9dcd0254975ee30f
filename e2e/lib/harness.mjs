// Shared pieces of the browser tests: start the real `baton demo` server on a free port
// with a fresh data directory, launch Debian's Chromium through playwright-core (never a
// downloaded browser), and small helpers for signing in and taking screenshots.

import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The e2e/ folder. */
export const E2E_DIR = path.resolve(here, '..');
/** The repository root. */
export const REPO_DIR = path.resolve(E2E_DIR, '..');

export const BATON_BIN = path.resolve(E2E_DIR, process.env.BATON_BIN || '../target/debug/baton');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const SCREENSHOT_DIR = path.resolve(
  REPO_DIR,
  process.env.SCREENSHOT_DIR || 'target/screenshots',
);

/** The server's stdout and stderr of the last run. */
export const SERVER_LOG = path.resolve(REPO_DIR, 'target/e2e-baton.log');

/** Every demo user shares this password (printed by `baton demo`). */
export const DEMO_PASSWORD = 'Huguan-2022!';

/** The two sizes every test runs at. */
export const VIEWPORTS = [
  {
    name: 'phone',
    options: {
      viewport: { width: 375, height: 812 },
      deviceScaleFactor: 2,
      isMobile: true,
      hasTouch: true,
    },
  },
  {
    name: 'desktop',
    options: {
      viewport: { width: 1366, height: 900 },
      deviceScaleFactor: 1,
      isMobile: false,
      hasTouch: false,
    },
  },
];

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Start `baton --data-dir <tmp> --listen 127.0.0.1:<port> --mode development demo` and wait
 * until /readyz answers 200 (at most ~60 s). Returns { baseURL, stop, output }.
 */
export async function startServer() {
  if (!existsSync(BATON_BIN)) {
    throw new Error(
      `baton binary not found at ${BATON_BIN}; run \`cargo build --bins\` first or set BATON_BIN`,
    );
  }
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'baton-e2e-'));
  const port = await freePort();
  const baseURL = `http://127.0.0.1:${port}`;
  // The server must not pick up a developer's BATON_* settings (a database URL, a config
  // file, production mode): the test owns its configuration. BATON_LOG stays.
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith('BATON_') || k === 'BATON_LOG') env[k] = v;
  }
  const args = ['--data-dir', dataDir, '--listen', `127.0.0.1:${port}`, '--mode', 'development'];
  if (process.env.BATON_E2E_DATABASE_URL) {
    args.push('--database-url', process.env.BATON_E2E_DATABASE_URL);
  }
  args.push('demo');
  const child = spawn(BATON_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk) => {
    output += chunk.toString();
    if (output.length > 200_000) output = output.slice(-100_000);
  };
  // Never leave a server behind if this process ends abruptly (a crash, a timeout).
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  let exited = null;
  const exitedPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (exited === null) {
      child.kill('SIGTERM');
      let timer;
      const timeout = new Promise((r) => {
        timer = setTimeout(() => r('timeout'), 10_000);
      });
      const first = await Promise.race([exitedPromise, timeout]);
      clearTimeout(timer); // a pending timer would keep node alive for 10 s
      if (first === 'timeout') {
        child.kill('SIGKILL');
        await exitedPromise;
      }
    }
    await rm(dataDir, { recursive: true, force: true });
    // Keep the server's log for a look after a failure.
    await mkdir(path.dirname(SERVER_LOG), { recursive: true });
    await writeFile(SERVER_LOG, output);
  };

  const deadline = Date.now() + 60_000;
  for (;;) {
    if (exited !== null) {
      await rm(dataDir, { recursive: true, force: true });
      throw new Error(
        `baton exited early (${JSON.stringify(exited)}) before /readyz; output:\n${output}`,
      );
    }
    try {
      const r = await fetch(`${baseURL}/readyz`, { signal: AbortSignal.timeout(2_000) });
      if (r.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`baton did not become ready within 60 s; output:\n${output}`);
    }
    await sleep(200);
  }
  return { baseURL, stop, output: () => output };
}

/** Launch Debian's Chromium headless. */
export async function launchBrowser() {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install chromium)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
}

/**
 * A fresh context (no cookies) at the given size, Chinese preferred like a county office's
 * browser. Collects page errors and console errors (CSP violations show up there).
 */
export async function newPage(browser, viewport, baseURL) {
  const context = await browser.newContext({
    ...viewport.options,
    baseURL,
    locale: 'zh-CN',
    timezoneId: 'Asia/Shanghai',
  });
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    // "Failed to load resource" repeats a response status without its URL; responses are
    // checked below instead (and Chromium's own /favicon.ico request is not one of them).
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
      problems.push(`console: ${m.text()}`);
    }
  });
  page.on('response', (r) => {
    const isDocument = r.request().resourceType() === 'document';
    // A document may answer 4xx on purpose (a wrong password is 401); its assets may not.
    if (r.status() >= 500 || (!isDocument && r.status() >= 400)) {
      problems.push(`HTTP ${r.status()} ${r.request().resourceType()} ${r.url()}`);
    }
  });
  return { context, page, problems };
}

/** Sign in through the login form and wait to leave the login page. */
export async function login(page, username, password = DEMO_PASSWORD) {
  await page.goto('/login');
  await page.fill('#username', username);
  await page.fill('#password', password);
  await Promise.all([
    page.waitForURL((u) => !u.pathname.startsWith('/login')),
    page.click('#login-form button[type="submit"]'),
  ]);
}

/** Click the language switch and wait for the page to come back in `htmlLang`. */
export async function switchLang(page, htmlLang) {
  await page.click('#lang-switch');
  await page.waitForSelector(`html[lang="${htmlLang}"]`, { state: 'attached' });
  await page.waitForLoadState('load');
}

export async function screenshot(page, name, { fullPage = true } = {}) {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  const file = path.join(SCREENSHOT_DIR, `${name}.png`);
  await page.screenshot({ path: file, fullPage });
  return file;
}

/** Widths of the document and the viewport, to catch horizontal scrolling. */
export async function widths(page) {
  return page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
  }));
}

/** Visible text of an element, whitespace collapsed. */
export async function text(page, selector) {
  const t = await page.locator(selector).first().innerText();
  return t.replace(/\s+/g, ' ').trim();
}
