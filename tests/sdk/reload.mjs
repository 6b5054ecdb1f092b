// One client of the official centrifuge JS SDK that stays connected while the server reloads its config (SIGHUP):
// it connects over --transports, then tries to subscribe to --channel every 300 ms until a subscribe succeeds, so the
// test sees the channel refused before the reload (an unknown namespace, error 102) and accepted after it, on the
// same connection (tests/test_reload.py).
//
//   node reload.mjs --url http://127.0.0.1:PORT --channel NAMESPACE:NAME [--transports websocket] [--deadline S]
//
// Events: connected {client, transport}, connecting {code, reason}, disconnected {code, reason},
//   refused {code, message}      one failed subscribe attempt
//   subscribed {recoverable, positioned}    the first subscribe that succeeded; then the script ends (done).

import { parseArgs } from 'node:util';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { emit, finish, guard, reportConnection, sleep } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    channel: { type: 'string' },
    transports: { type: 'string', default: 'websocket' },
    deadline: { type: 'string', default: '30' },
  },
});

const ENDPOINTS = { websocket: '/connection/websocket', http_stream: '/connection/http_stream' };
const names = args.transports.split(',').filter(Boolean);
if (!args.url || !args.channel || names.length === 0 || names.some((name) => !(name in ENDPOINTS))) {
  console.error('usage: node reload.mjs --url URL --channel NAME [--transports websocket,http_stream]');
  process.exit(64);
}
guard(args.deadline, { keepAlive: true });

const client = new Centrifuge(
  names.map((transport) => ({
    transport,
    endpoint: (transport === 'websocket' ? args.url.replace(/^http/, 'ws') : args.url) + ENDPOINTS[transport],
  })),
  { websocket: WebSocket, emulationEndpoint: args.url + '/emulation' },
);
reportConnection(client, 'a');
client.connect();
await client.ready(10000);

for (;;) {
  const sub = client.newSubscription(args.channel);
  const outcome = new Promise((resolve) => {
    sub.on('subscribed', (ctx) => resolve({ ok: true, ctx }));
    sub.on('error', (ctx) => resolve({ ok: false, error: ctx.error }));
    sub.on('unsubscribed', (ctx) => resolve({ ok: false, error: { code: ctx.code, message: ctx.reason } }));
  });
  sub.subscribe();
  const result = await outcome;
  if (result.ok) {
    emit('subscribed', { recoverable: result.ctx.recoverable, positioned: result.ctx.positioned });
    finish(0);
  }
  emit('refused', { code: result.error.code, message: result.error.message });
  sub.removeAllListeners();
  sub.unsubscribe();
  client.removeSubscription(sub);
  await sleep(300);
}
