// Many clients of the official centrifuge JS SDK (npm `centrifuge`, pinned in package.json) in one process, each
// subscribed to one recoverable channel, counting what they receive while the test (tests/test_faults.py) cuts
// their connections, restarts Redis or kills a node under them.
//
//   node faults.mjs --clients FILE --channel CHANNEL [--settle SECONDS] [--numbers] [--deadline SECONDS]
//
// FILE is JSON: a list of {"who": NAME, "url": "http://127.0.0.1:PORT", "transport": "websocket"|"http_stream",
// "token": JWT}. Every publication's data is {"n": N}, numbered 1, 2, ... in the order the test published them.
//
// Events (one JSON object per line on stdout; the per-client ones carry "who"):
//   connected {who, client, transport}   connecting {who, code, reason}   disconnected {who, code, reason}
//   subscribing {who, code, reason}      subscribed {who, wasRecovering, recovered, offset, epoch}
//   unsubscribed {who, code, reason}     error {who, type, error}   sub_error {who, error}
//   ready                                once every client has subscribed for the first time
//   summary {who, received, distinct, lost, duplicated, outOfOrder, last, reconnects, recoveries, notRecovered}
//                                        per client, once asked for (below); with --numbers also "runs": every
//                                        number received, in the order received, as [first, last] runs of
//                                        consecutive numbers (short lines, whatever was received)
//
// Commands (one JSON object per line on stdin):
//   {"expect": N}   wait until every client has received publication N (or `--settle` seconds pass without any
//                   client receiving anything new), print every client's summary, disconnect all and end (done).
//                   lost: how many of 1..N never arrived; duplicated: deliveries of a number already received;
//                   outOfOrder: deliveries of a number below the highest one received before it.
//
// Exit code: 0 after the summaries, 1 on an unexpected failure, 2 when --deadline passes first.

import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import WebSocket from 'ws';
import { emit, fail, finish, guard, sleep } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    clients: { type: 'string' },
    channel: { type: 'string' },
    settle: { type: 'string', default: '15' },
    numbers: { type: 'boolean', default: false },
    deadline: { type: 'string', default: '120' },
  },
});

if (!args.clients || !args.channel) {
  console.error('usage: node faults.mjs --clients FILE --channel CHANNEL [--settle SECONDS] [--deadline SECONDS]');
  process.exit(64);
}

const { Centrifuge } = await import('centrifuge');
guard(args.deadline, { keepAlive: true });

const ENDPOINTS = { websocket: '/connection/websocket', http_stream: '/connection/http_stream' };
const specs = JSON.parse(readFileSync(args.clients, 'utf8'));
let lastArrival = Date.now();

const clients = specs.map((spec) => {
  const who = spec.who;
  const base = spec.transport === 'websocket' ? spec.url.replace(/^http/, 'ws') : spec.url;
  const client = new Centrifuge([{ transport: spec.transport, endpoint: base + ENDPOINTS[spec.transport] }], {
    token: spec.token,
    websocket: WebSocket,
    // Node has no page origin: a relative emulation endpoint would make every POST fail.
    emulationEndpoint: spec.url + '/emulation',
    timeout: 10000,
    minReconnectDelay: 100,
    maxReconnectDelay: 1000,
  });
  const state = { who, client, received: [], reconnects: 0, recoveries: 0, notRecovered: 0, subscribedOnce: null };
  client.on('connecting', (ctx) => {
    if (ctx.code !== 0) {
      state.reconnects += 1;
    }
    emit('connecting', { who, code: ctx.code, reason: ctx.reason });
  });
  client.on('connected', (ctx) => emit('connected', { who, client: ctx.client, transport: ctx.transport }));
  client.on('disconnected', (ctx) => emit('disconnected', { who, code: ctx.code, reason: ctx.reason }));
  client.on('error', (ctx) => emit('error', { who, type: ctx.type, error: ctx.error }));

  const sub = client.newSubscription(args.channel);
  state.subscribedOnce = new Promise((resolve) => sub.once('subscribed', resolve));
  sub.on('subscribing', (ctx) => emit('subscribing', { who, code: ctx.code, reason: ctx.reason }));
  sub.on('subscribed', (ctx) => {
    if (ctx.wasRecovering) {
      state.recoveries += 1;
      if (!ctx.recovered) {
        state.notRecovered += 1;
      }
    }
    emit('subscribed', {
      who,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      offset: ctx.streamPosition ? Number(ctx.streamPosition.offset) : null,
      epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
    });
  });
  sub.on('unsubscribed', (ctx) => emit('unsubscribed', { who, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => emit('sub_error', { who, error: ctx.error }));
  sub.on('publication', (ctx) => {
    state.received.push(ctx.data.n);
    lastArrival = Date.now();
  });
  sub.subscribe();
  client.connect();
  return state;
});

await Promise.all(clients.map((state) => state.subscribedOnce));
emit('ready');

// [1,2,3,7,8,3] -> [[1,3],[7,8],[3,3]]
function runs(numbers) {
  const out = [];
  for (const n of numbers) {
    const last = out[out.length - 1];
    if (last && n === last[1] + 1) {
      last[1] = n;
    } else {
      out.push([n, n]);
    }
  }
  return out;
}

function summary(state, expected) {
  const seen = new Uint32Array(expected + 1);
  let duplicated = 0;
  let outOfOrder = 0;
  let highest = 0;
  for (const n of state.received) {
    if (n >= 1 && n <= expected) {
      if (seen[n] > 0) {
        duplicated += 1;
      }
      seen[n] += 1;
    }
    if (n < highest) {
      outOfOrder += 1;
    }
    highest = Math.max(highest, n);
  }
  let distinct = 0;
  for (let n = 1; n <= expected; n += 1) {
    distinct += seen[n] > 0 ? 1 : 0;
  }
  return {
    who: state.who,
    received: state.received.length,
    distinct,
    lost: expected - distinct,
    duplicated,
    outOfOrder,
    last: state.received.length ? state.received[state.received.length - 1] : 0,
    reconnects: state.reconnects,
    recoveries: state.recoveries,
    notRecovered: state.notRecovered,
    ...(args.numbers ? { runs: runs(state.received) } : {}),
  };
}

async function expect(expected) {
  const settle = Number(args.settle) * 1000;
  const done = () => clients.every((state) => state.received.lastIndexOf(expected) >= 0);
  while (!done() && Date.now() - lastArrival < settle) {
    await sleep(50);
  }
  for (const state of clients) {
    emit('summary', summary(state, expected));
  }
  for (const state of clients) {
    state.client.disconnect();
  }
  finish(0);
}

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) {
    return;
  }
  const command = JSON.parse(line);
  if ('expect' in command) {
    expect(Number(command.expect)).catch((error) => fail(String(error)));
  } else {
    fail(`unknown command ${line}`);
  }
});
