// Drives the official centrifuge JS SDK (npm `centrifuge`, pinned in package.json) against one httpstream port
// served by several worker processes (twistd httpstream --workers N), over transport http_stream only, for
// tests/workers/test_workers_process.py.
//
//   node workers.mjs --url http://127.0.0.1:PORT --channel CHANNEL --clients N [--stagger MS] [--deadline SECONDS]
//
// --stagger starts the clients MS milliseconds apart: connections that all arrive at once at an idle server are
// accepted by whichever worker wakes first (docs/deployment.md), and the tests want clients on every worker.
// N clients, "c0" .. "c<N-1>", each its own Centrifuge object, connect and subscribe to --channel (a recoverable
// one). Every event is one JSON object per line with "who": connected (with "node": the node id the stream's
// connect reply named, which the SDK keeps for its emulation requests in a private field; it is the only way a
// client can tell which worker serves its stream), connecting, disconnected, subscribed (recovery flags), and each
// publication (data and offset).
//
// Commands, one JSON object per line on stdin:
//   {"publish": {"who": "c1", "data": DATA}}   c1 publishes DATA (through /emulation): publish_ok or publish_error
//   {"exit": true}                              disconnect all and end (exit code 0)
//
// Exit code: 0 after "exit" (or stdin closed), 1 on an unexpected failure, 2 on timeout.

import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import { emit, finish, guard } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    channel: { type: 'string', default: 'rr:workers' },
    clients: { type: 'string', default: '8' },
    deadline: { type: 'string', default: '60' },
    stagger: { type: 'string', default: '0' },
  },
});

if (!args.url) {
  console.error('usage: node workers.mjs --url URL [--channel CHANNEL] [--clients N] [--deadline SECONDS]');
  process.exit(64);
}

const { Centrifuge } = await import('centrifuge');

guard(args.deadline);

const channel = args.channel;
const clients = {};

for (let i = 0; i < Number(args.clients); i++) {
  if (Number(args.stagger) > 0 && i > 0) {
    await new Promise((resolve) => setTimeout(resolve, Number(args.stagger)));
  }
  const who = `c${i}`;
  const client = new Centrifuge([{ transport: 'http_stream', endpoint: args.url + '/connection/http_stream' }], {
    // Node has no page origin: a relative emulation endpoint would make every POST fail.
    emulationEndpoint: args.url + '/emulation',
    timeout: 5000,
    minReconnectDelay: 100,
    maxReconnectDelay: 500,
  });
  client.on('connecting', (ctx) => emit('connecting', { who, code: ctx.code, reason: ctx.reason }));
  client.on('connected', (ctx) => emit('connected', { who, client: ctx.client, node: client._node }));
  client.on('disconnected', (ctx) => emit('disconnected', { who, code: ctx.code, reason: ctx.reason }));
  client.on('error', (ctx) => emit('error', { who, type: ctx.type, error: ctx.error }));
  const sub = client.newSubscription(channel);
  sub.on('subscribed', (ctx) =>
    emit('subscribed', {
      who,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      offset: ctx.streamPosition ? Number(ctx.streamPosition.offset) : null,
    }),
  );
  sub.on('subscribing', (ctx) => emit('subscribing', { who, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => emit('sub_error', { who, type: ctx.type, error: ctx.error }));
  sub.on('publication', (ctx) =>
    emit('publication', { who, data: ctx.data, offset: ctx.offset === undefined ? null : Number(ctx.offset) }),
  );
  clients[who] = client;
  client.connect();
  sub.subscribe();
}

async function run(command) {
  if ('publish' in command) {
    const { who, data } = command.publish;
    try {
      await clients[who].publish(channel, data);
      emit('publish_ok', { who });
    } catch (error) {
      emit('publish_error', { who, code: error?.code, message: error?.message });
    }
  } else if ('exit' in command) {
    Object.values(clients).forEach((client) => client.disconnect());
    finish(0);
  } else {
    finish(1, { message: `unknown command ${JSON.stringify(command)}` });
  }
}

// Commands run concurrently (publishes from many clients at once), each answered by its own event.
const lines = createInterface({ input: process.stdin });
const pending = [];
lines.on('line', (line) => {
  if (line.trim()) {
    pending.push(run(JSON.parse(line)));
  }
});
lines.on('close', () => {
  Promise.all(pending).then(() => {
    Object.values(clients).forEach((client) => client.disconnect());
    finish(0);
  });
});
