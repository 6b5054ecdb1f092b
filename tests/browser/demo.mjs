// Drives Debian's Chromium (playwright-core, no downloaded browser) through httpstream's demo chat at /demo/.
//
//   node demo.mjs --tab URL [--tab URL ...] --expect connected|blocked [options]
//
// Each --tab opens one page (a tab) of one browser. Then:
//   --expect connected  every tab must connect and subscribe; the k-th --message (repeatable) is typed in tab k
//                       (modulo the number of tabs) and sent; every tab must show it. --screenshot PATH then saves
//                       the last tab.
//   --expect blocked    for --wait seconds the tabs must never reach "connected"; tab 0 tries to publish
//                       anyway (through the SDK, as the Send button is disabled) and no tab may show a message.
//
// Prints one JSON object per line (tests/test_browser.py asserts on them):
//   {"event":"tab","tab":N,"state":...,"transport":...,"subscription":...,"everConnected":bool}
//   {"event":"received","tab":N,"text":...}   {"event":"console","tab":N,"type":...,"text":...}
//   {"event":"done"} | {"event":"fail","message":...} | {"event":"timeout"}
// Exit code: 0 when the checks passed, 1 when they failed, 2 on --deadline.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    tab: { type: 'string', multiple: true, default: [] },
    expect: { type: 'string' },
    message: { type: 'string', multiple: true, default: ['hello from tab 0'] },
    screenshot: { type: 'string' },
    wait: { type: 'string', default: '3' },
    deadline: { type: 'string', default: '40' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});

if (!args.tab.length || !['connected', 'blocked'].includes(args.expect)) {
  console.error('usage: node demo.mjs --tab URL [--tab URL ...] --expect connected|blocked [...]');
  process.exit(64);
}

const STEP_TIMEOUT = 15000;
let browser;
const pages = [];
const profile = mkdtempSync(join(tmpdir(), 'httpstream-chromium-'));

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

async function finish(code, fields = {}) {
  if (code !== 0) {
    // What each tab showed when it went wrong.
    for (const [index, page] of pages.entries()) {
      try {
        emit('tab', { tab: index, ...(await status(page)), messages: await messages(page),
          error: await page.$eval('#error', (el) => el.textContent) });
      } catch {
        // The page is gone.
      }
    }
  }
  emit(code === 0 ? 'done' : code === 2 ? 'timeout' : 'fail', fields);
  try {
    await browser?.close();
  } catch {
    // Already gone: nothing to close.
  }
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

setTimeout(() => finish(2), Number(args.deadline) * 1000).unref();

async function status(page) {
  return page.$eval('#status', (el) => ({
    state: el.dataset.state,
    transport: el.dataset.transport,
    subscription: el.dataset.subscription,
    detail: el.textContent.trim().replace(/\s+/g, ' '),
  }));
}

async function messages(page) {
  return page.$$eval('#messages li.message .text', (items) => items.map((item) => item.textContent));
}

async function main() {
  // The flags this machine needs: no sandbox as root, and no background traffic to hosts that cannot be reached.
  // A fresh, empty profile each run (launchPersistentContext: the user data dir is ours, not one Playwright picks).
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    viewport: { width: 900, height: 640 },
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  browser = context;

  for (const [index, url] of args.tab.entries()) {
    const page = index === 0 && context.pages().length ? context.pages()[0] : await context.newPage();
    page.on('console', (msg) => emit('console', { tab: index, type: msg.type(), text: msg.text() }));
    page.on('pageerror', (error) => emit('console', { tab: index, type: 'pageerror', text: String(error) }));
    await page.goto(url);
    pages.push(page);
  }

  if (args.expect === 'connected') {
    for (const [index, page] of pages.entries()) {
      await page.waitForSelector('#status[data-subscription="subscribed"]', { timeout: STEP_TIMEOUT });
      emit('tab', { tab: index, ...(await status(page)), everConnected: true });
    }
    // Message k is typed in tab k (modulo the number of tabs) and must show in every tab.
    for (const [k, message] of args.message.entries()) {
      const sender = pages[k % pages.length];
      // A click in a tab that is not in front waits a second or more for it to paint: type as a person would.
      await sender.bringToFront();
      await sender.fill('#text', message);
      await sender.click('#send');
      for (const [index, page] of pages.entries()) {
        await page.waitForFunction(
          (text) => [...document.querySelectorAll('#messages li.message .text')].some((el) => el.textContent === text),
          message,
          { timeout: STEP_TIMEOUT },
        );
        emit('received', { tab: index, text: message, from: k % pages.length });
      }
      // The sender's input is cleared once the server acknowledged the publication.
      await sender.waitForFunction(() => document.getElementById('text').value === '', null, { timeout: STEP_TIMEOUT });
    }
    if (args.screenshot) {
      const last = pages[pages.length - 1];
      await last.bringToFront();
      await last.screenshot({ path: args.screenshot });
      emit('screenshot', { path: args.screenshot });
    }
    return finish(0);
  }

  // blocked: watch every tab's state for --wait seconds.
  const everConnected = pages.map(() => false);
  const publishes = [];
  pages[0].evaluate((text) => window.demo.centrifuge.publish(window.demo.settings.channel, { user: 'tab 0', text })
    .then(() => 'published', (err) => `rejected: ${JSON.stringify(err)}`), args.message[0])
    .then((outcome) => publishes.push(outcome), (err) => publishes.push(`error: ${err}`));
  const until = Date.now() + Number(args.wait) * 1000;
  while (Date.now() < until) {
    for (const [index, page] of pages.entries()) {
      if ((await status(page)).state === 'connected') {
        everConnected[index] = true;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  let leaked = false;
  for (const [index, page] of pages.entries()) {
    const shown = await messages(page);
    leaked = leaked || shown.length > 0;
    emit('tab', { tab: index, ...(await status(page)), everConnected: everConnected[index], messages: shown });
  }
  emit('publish', { outcome: publishes[0] ?? 'pending' });
  if (everConnected.some(Boolean)) {
    return finish(1, { message: 'a tab connected although its origin is not allowed' });
  }
  if (leaked) {
    return finish(1, { message: 'a message got through' });
  }
  return finish(0);
}

main().catch((error) => finish(1, { message: String(error?.stack || error) }));
