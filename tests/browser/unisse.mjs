// Opens a plain browser EventSource on httpstream's /connection/uni_sse in Debian's Chromium (playwright-core), and
// drives the server API from Node while it listens:
//
//   node unisse.mjs --page URL --sse URL --api URL --key KEY --channel CHANNEL --user USER
//
// --page is a page of the server's own origin (the EventSource is same-origin); --sse the stream's URL (with
// cf_connect). Once the connect push has arrived, a publication is sent to --channel and a ping awaited; then
// --user is disconnected through the API and the page closes its EventSource at the error that follows (the end of
// the stream), so it does not reconnect.
//
// Prints one JSON object per line (tests/test_browser_uni.py asserts on them):
//   {"event":"es","type":"open"|"message"|"error","data":...}   {"event":"console",...}
//   {"event":"done"} | {"event":"fail","message":...} | {"event":"timeout"}
// Exit code: 0 when every step happened, 1 when one failed, 2 on --deadline.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: args } = parseArgs({
  options: {
    page: { type: 'string' },
    sse: { type: 'string' },
    api: { type: 'string' },
    key: { type: 'string' },
    channel: { type: 'string' },
    user: { type: 'string' },
    deadline: { type: 'string', default: '40' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
  },
});

const STEP_TIMEOUT = 15000;
const profile = mkdtempSync(join(tmpdir(), 'httpstream-chromium-'));
let context;
let page;

function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

async function finish(code, fields = {}) {
  try {
    for (const item of (await page?.evaluate(() => window.received)) ?? []) {
      emit('es', item);
    }
  } catch {
    // The page is gone.
  }
  emit(code === 0 ? 'done' : code === 2 ? 'timeout' : 'fail', fields);
  try {
    await context?.close();
  } catch {
    // Already gone.
  }
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

setTimeout(() => finish(2), Number(args.deadline) * 1000).unref();

async function api(method, body) {
  const response = await fetch(`${args.api}/api/${method}`, {
    method: 'POST',
    headers: { 'X-API-Key': args.key, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (response.status !== 200) {
    throw new Error(`api ${method}: ${response.status}`);
  }
  return response.json();
}

function until(predicate, arg) {
  return page.waitForFunction(predicate, arg, { timeout: STEP_TIMEOUT });
}

async function main() {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: args.chromium,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (msg) => emit('console', { type: msg.type(), text: msg.text() }));
  page.on('pageerror', (error) => emit('console', { type: 'pageerror', text: String(error) }));
  await page.goto(args.page);
  await page.evaluate((url) => {
    window.received = [];
    const source = new EventSource(url);
    source.onopen = () => window.received.push({ type: 'open' });
    source.onmessage = (message) => window.received.push({ type: 'message', data: JSON.parse(message.data) });
    source.onerror = () => {
      window.received.push({ type: 'error', readyState: source.readyState });
      source.close();
    };
  }, args.sse);
  await until(() => window.received.some((item) => item.data?.connect));
  await api('publish', { channel: args.channel, data: { text: 'to an EventSource' } });
  await until((channel) => window.received.some((item) => item.data?.channel === channel && item.data.pub), args.channel);
  await until(() => window.received.some((item) => item.type === 'message' && Object.keys(item.data).length === 0));
  await api('disconnect', { user: args.user });
  await until(() => window.received.some((item) => item.type === 'error'));
  return finish(0);
}

main().catch((error) => finish(1, { message: String(error?.stack || error) }));
