// Drives the official centrifuge JS SDK (npm `centrifuge`, pinned in package.json) against a running httpstream
// server over transport http_stream ONLY, while the test (tests/test_redis_restart.py) kills and restarts the
// server's Redis.
//
//   node redis_restart.mjs --url http://127.0.0.1:PORT --channel CHANNEL [--deadline SECONDS]
//
// Client "a" connects and subscribes to --channel, then reports everything the SDK says, one JSON object per line
// on stdout: client events (connected, connecting, disconnected, error), subscription events (subscribing and
// unsubscribed with their codes, subscribed with its recovery flags and stream position, sub_error), and every
// publication (data and offset).
//
// Commands, one JSON object per line on stdin, each answered by one event:
//   {"publish": DATA}   the client publishes DATA to the channel: {"event":"publish_ok"} or
//                       {"event":"publish_error","code":..,"message":..,"temporary":..}
//   {"history": {}}     the subscription's history (limit 10): {"event":"history_ok","offset":..,"epoch":..,
//                       "publications":[data...]} or {"event":"history_error",...}
//   {"exit": true}      disconnect and end (exit code 0).
//
// Exit code: 0 after "exit" (or stdin closed), 1 on an unexpected failure ({"event":"fail",...}), 2 on timeout.

import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import { emit, finish, guard } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    channel: { type: 'string', default: 'sdk-redis' },
    deadline: { type: 'string', default: '55' },
  },
});

if (!args.url) {
  console.error('usage: node redis_restart.mjs --url URL [--channel CHANNEL] [--deadline SECONDS]');
  process.exit(64);
}

const { Centrifuge } = await import('centrifuge');

guard(args.deadline);

function errorFields(error) {
  return { code: error?.code, message: error?.message, temporary: Boolean(error?.temporary) };
}

const client = new Centrifuge([{ transport: 'http_stream', endpoint: args.url + '/connection/http_stream' }], {
  // Node has no page origin: a relative emulation endpoint would make every POST fail.
  emulationEndpoint: args.url + '/emulation',
  timeout: 5000,
  minReconnectDelay: 200,
  maxReconnectDelay: 1000,
});
client.on('connecting', (ctx) => emit('connecting', { code: ctx.code, reason: ctx.reason }));
client.on('connected', (ctx) => emit('connected', { client: ctx.client, transport: ctx.transport }));
client.on('disconnected', (ctx) => emit('disconnected', { code: ctx.code, reason: ctx.reason }));
client.on('error', (ctx) => emit('error', { type: ctx.type, error: ctx.error }));

const channel = args.channel;
const sub = client.newSubscription(channel);
sub.on('subscribing', (ctx) => emit('subscribing', { channel, code: ctx.code, reason: ctx.reason }));
sub.on('subscribed', (ctx) =>
  emit('subscribed', {
    channel,
    recoverable: ctx.recoverable,
    positioned: ctx.positioned,
    wasRecovering: ctx.wasRecovering,
    recovered: ctx.recovered,
    hasRecoveredPublications: ctx.hasRecoveredPublications,
    offset: ctx.streamPosition ? Number(ctx.streamPosition.offset) : null,
    epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
  }),
);
sub.on('unsubscribed', (ctx) => emit('unsubscribed', { channel, code: ctx.code, reason: ctx.reason }));
sub.on('error', (ctx) => emit('sub_error', { channel, type: ctx.type, error: ctx.error }));
sub.on('publication', (ctx) =>
  emit('publication', { channel: ctx.channel, data: ctx.data, offset: ctx.offset === undefined ? null : Number(ctx.offset) }),
);

client.connect();
sub.subscribe();

async function run(command) {
  if ('publish' in command) {
    try {
      await client.publish(channel, command.publish);
      emit('publish_ok');
    } catch (error) {
      emit('publish_error', errorFields(error));
    }
  } else if ('history' in command) {
    try {
      const result = await sub.history({ limit: 10 });
      emit('history_ok', {
        offset: Number(result.offset),
        epoch: result.epoch,
        publications: result.publications.map((p) => p.data),
      });
    } catch (error) {
      emit('history_error', errorFields(error));
    }
  } else if ('exit' in command) {
    client.disconnect();
    finish(0);
  } else {
    finish(1, { message: `unknown command ${JSON.stringify(command)}` });
  }
}

// One command at a time, in order.
let queue = Promise.resolve();
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line.trim()) {
    queue = queue.then(() => run(JSON.parse(line)));
  }
});
lines.on('close', () => {
  queue.then(() => {
    client.disconnect();
    finish(0);
  });
});
