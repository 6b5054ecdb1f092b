// One client of the official centrifuge JS SDK (npm `centrifuge`, pinned in package.json) that watches what the
// server API does to it: it connects to a running httpstream server (with a connection token, so it has a user),
// subscribes to channels, and prints every SDK event as one JSON object per line on stdout, while the test calls
// the server API (tests/serverapi/test_cent.py with `cent`, tests/test_examples.py with an embedding program).
//
//   node api_subscriber.mjs --url http://127.0.0.1:PORT [--token JWT] [--channel NAME ...] [--who NAME]
//                           [--transports http_stream] [--publications N] [--deadline SECONDS]
//
// Events (each with "who"):
//   connected {client, transport}          connecting {code, reason}          disconnected {code, reason}
//   subscribed {channel}                   subscribing {channel, code, reason} unsubscribed {channel, code, reason}
//   publication {channel, data, tags, offset}      (a subscription this script made)
//   server_subscribed {channel}  server_unsubscribed {channel}  server_publication {channel, data, tags, offset}
//                                          (server-side subscriptions: the API's subscribe)
//   ready                                  once: connected and every --channel subscribed
//   error {type, error}, sub_error {channel, type, error}
//
// It ends by itself (exit 0, {"event":"done"}) once the SDK is disconnected for good (a code it does not reconnect
// after), or once it has received --publications publications (when given); {"event":"timeout"} and exit 2 after
// --deadline seconds.

import { parseArgs } from 'node:util';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { emit, finish, guard, stampEvents } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    token: { type: 'string', default: '' },
    channel: { type: 'string', multiple: true, default: [] },
    who: { type: 'string', default: 'a' },
    transports: { type: 'string', default: 'http_stream' },
    publications: { type: 'string', default: '0' },
    deadline: { type: 'string', default: '30' },
  },
});

const ENDPOINTS = {
  websocket: '/connection/websocket',
  http_stream: '/connection/http_stream',
};

const transportNames = args.transports.split(',').filter(Boolean);
if (!args.url || transportNames.length === 0 || transportNames.some((name) => !(name in ENDPOINTS))) {
  console.error('usage: node api_subscriber.mjs --url URL [--token JWT] [--channel NAME ...] [--transports http_stream,websocket]');
  process.exit(64);
}

const who = args.who;

// Every event (done, fail and timeout too) says which client it is: the tests run several at once.
stampEvents(() => ({ who }));
// Not unref'd: it also keeps the process alive while the SDK waits to reconnect.
guard(args.deadline, { keepAlive: true });

const transports = transportNames.map((transport) => ({
  transport,
  endpoint: (transport === 'websocket' ? args.url.replace(/^http/, 'ws') : args.url) + ENDPOINTS[transport],
}));

const client = new Centrifuge(transports, {
  token: args.token || undefined,
  websocket: WebSocket,
  // Node has no page origin: a relative emulation endpoint would make every POST fail.
  emulationEndpoint: args.url + '/emulation',
  timeout: 5000,
  minReconnectDelay: 100,
  maxReconnectDelay: 500,
});

const wanted = Number(args.publications);
let received = 0;

function publication(kind, ctx) {
  emit(kind, { channel: ctx.channel, data: ctx.data, tags: ctx.tags ?? null, offset: ctx.offset ?? null });
  received += 1;
  if (wanted > 0 && received >= wanted) {
    client.disconnect();
    finish(0);
  }
}

client.on('connecting', (ctx) => emit('connecting', { code: ctx.code, reason: ctx.reason }));
client.on('connected', (ctx) => emit('connected', { client: ctx.client, transport: ctx.transport }));
client.on('disconnected', (ctx) => {
  emit('disconnected', { code: ctx.code, reason: ctx.reason });
  // Let the subscriptions' own events come out before stopping.
  setTimeout(() => finish(0), 100);
});
client.on('error', (ctx) => emit('error', { type: ctx.type, error: ctx.error }));
client.on('subscribed', (ctx) => emit('server_subscribed', { channel: ctx.channel }));
client.on('unsubscribed', (ctx) => emit('server_unsubscribed', { channel: ctx.channel }));
client.on('publication', (ctx) => publication('server_publication', ctx));

const subscriptions = args.channel.map((channel) => {
  const sub = client.newSubscription(channel);
  sub.on('subscribing', (ctx) => emit('subscribing', { channel, code: ctx.code, reason: ctx.reason }));
  sub.on('subscribed', () => emit('subscribed', { channel }));
  sub.on('unsubscribed', (ctx) => emit('unsubscribed', { channel, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => emit('sub_error', { channel, type: ctx.type, error: ctx.error }));
  sub.on('publication', (ctx) => publication('publication', ctx));
  sub.subscribe();
  return sub;
});

client.connect();
await client.ready();
await Promise.all(subscriptions.map((sub) => sub.ready()));
emit('ready');
