// Drives the official centrifuge JS SDK (npm `centrifuge`, pinned in package.json) against a running httpstream
// server over transport http_stream ONLY, with commands going up through /emulation.
//
//   node http_stream.mjs --url http://127.0.0.1:PORT --protocol json|protobuf --scenario NAME [options]
//
// Scenarios (each prints one JSON object per line on stdout; tests/test_sdk_http_stream.py asserts on them):
//   pubsub    clients "a" and "b" connect and subscribe to --channel; "a" publishes --data; both must receive it.
//   ping      client "a" connects and subscribes, stays connected for --duration seconds while the server pings,
//             then publishes --data and must receive it on the same connection.
//   token     one client per --token (repeatable), one after the other: reports "connected" or the
//             "disconnected" code the server gave; a connected one then publishes --data to --channel and reports
//             the publication's info (the user the token named).
//   shutdown  client "a" connects and subscribes, prints {"event":"ready"}, then waits until the server ends the
//             connection and reports what the SDK did ("connecting" with the server's code when it reconnects).
//
// Data: --data is JSON text for --protocol json; hex bytes for --protocol protobuf (published as a Uint8Array;
// received Uint8Arrays are printed as {"hex": "..."}).
//
// Every emulation POST the SDK makes is reported as {"event":"emulation","status":...,"pong":bool}, so a test can
// see the pongs the client sent (it sends one per server ping) and the statuses the server answered.
//
// Exit code: 0 when the scenario's own checks passed, 1 when they failed ({"event":"fail",...}), 2 on timeout
// ({"event":"timeout"}).

import { parseArgs } from 'node:util';
import { emit, fail, guard, hex, loadCentrifuge, parsePayload, reportConnection, runScenario, sleep } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    protocol: { type: 'string', default: 'json' },
    scenario: { type: 'string' },
    channel: { type: 'string', default: 'sdk-chat' },
    data: { type: 'string', default: '{"text":"hello"}' },
    token: { type: 'string', multiple: true, default: [] },
    duration: { type: 'string', default: '7' },
    deadline: { type: 'string', default: '20' },
  },
});

if (!args.url || !args.scenario || !['json', 'protobuf'].includes(args.protocol)) {
  console.error('usage: node http_stream.mjs --url URL --protocol json|protobuf --scenario NAME [...]');
  process.exit(64);
}

const protobuf = args.protocol === 'protobuf';
const Centrifuge = await loadCentrifuge(protobuf);

guard(args.deadline);

// What the SDK hands over as publication data, made printable and comparable.
function printable(data) {
  return data instanceof Uint8Array ? { hex: hex(data) } : data;
}

const payload = parsePayload(args.data, protobuf);
const expected = JSON.stringify(printable(payload));

// The data field (3) of a protobuf EmulationRequest, or null (a minimal reader: every field is length-delimited).
function emulationData(body) {
  let i = 0;
  const varint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const byte = body[i++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  let data = null;
  while (i < body.length) {
    const key = varint();
    if ((key & 7) !== 2) return null;
    const length = varint();
    if (key >> 3 === 3) data = body.subarray(i, i + length);
    i += length;
  }
  return data;
}

// A pong is one empty command: "{}" in a JSON emulation request, the single byte 00 in a protobuf one.
function isPong(body) {
  if (typeof body === 'string') {
    try {
      return JSON.parse(body).data === '{}';
    } catch {
      return false;
    }
  }
  const data = body instanceof Uint8Array ? emulationData(body) : null;
  return data !== null && data.length === 1 && data[0] === 0;
}

function spyingFetch(who) {
  return (url, options) => {
    const emulation = String(url).endsWith('/emulation');
    const pong = emulation && isPong(options.body);
    return globalThis.fetch(url, options).then(
      (response) => {
        if (emulation) {
          emit('emulation', { who, status: response.status, pong });
        } else {
          emit('stream', { who, status: response.status, contentType: response.headers.get('content-type') });
        }
        return response;
      },
      (error) => {
        if (!(error && error.name === 'AbortError')) {
          emit('fetch_error', { who, emulation, message: String(error && error.message) });
        }
        throw error;
      },
    );
  };
}

function newClient(who, options = {}) {
  const client = new Centrifuge(
    [{ transport: 'http_stream', endpoint: args.url + '/connection/http_stream' }],
    {
      // Node has no page origin: a relative emulation endpoint would make every POST fail.
      emulationEndpoint: args.url + '/emulation',
      fetch: spyingFetch(who),
      timeout: 5000,
      minReconnectDelay: 200,
      maxReconnectDelay: 1000,
      ...options,
    },
  );
  reportConnection(client, who);
  return client;
}

function subscribe(client, who, channel) {
  const sub = client.newSubscription(channel);
  sub.on('subscribing', (ctx) => emit('subscribing', { who, channel, code: ctx.code, reason: ctx.reason }));
  sub.on('subscribed', () => emit('subscribed', { who, channel }));
  sub.on('unsubscribed', (ctx) => emit('unsubscribed', { who, channel, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => emit('sub_error', { who, channel, type: ctx.type, error: ctx.error }));
  sub.on('publication', (ctx) =>
    emit('publication', { who, channel: ctx.channel, data: printable(ctx.data), info: publisher(ctx.info) }),
  );
  sub.subscribe();
  return sub;
}

// The publisher as the SDK reports it (protobuf also gives empty connInfo/chanInfo buffers: not printed).
function publisher(info) {
  return info ? { client: info.client, user: info.user } : null;
}

function nextPublication(sub) {
  return new Promise((resolve) => sub.once('publication', resolve));
}

function samePayload(data) {
  return JSON.stringify(printable(data)) === expected;
}

async function publishAndReceive(client, sub, who) {
  const received = nextPublication(sub);
  await client.publish(sub.channel, payload);
  emit('published', { who, channel: sub.channel });
  const ctx = await received;
  if (!samePayload(ctx.data)) {
    fail(`${who} received ${JSON.stringify(printable(ctx.data))}, published ${expected}`);
  }
  return ctx;
}

const scenarios = {
  async pubsub() {
    const a = newClient('a');
    const b = newClient('b');
    a.connect();
    b.connect();
    const subA = subscribe(a, 'a', args.channel);
    const subB = subscribe(b, 'b', args.channel);
    await Promise.all([subA.ready(), subB.ready()]);
    const atB = nextPublication(subB);
    const [ownCtx, otherCtx] = await Promise.all([publishAndReceive(a, subA, 'a'), atB]);
    if (!samePayload(otherCtx.data)) {
      fail(`b received ${JSON.stringify(printable(otherCtx.data))}, a published ${expected}`);
    }
    if (ownCtx.info?.client !== otherCtx.info?.client) {
      fail('a and b saw different publishers');
    }
    a.disconnect();
    b.disconnect();
  },

  async ping() {
    const a = newClient('a');
    let left = false;
    a.on('state', (ctx) => {
      if (ctx.oldState === 'connected') left = true;
    });
    a.connect();
    const sub = subscribe(a, 'a', args.channel);
    await sub.ready();
    await sleep(Number(args.duration) * 1000);
    if (left) {
      fail('the client left the connected state while it waited');
    }
    await publishAndReceive(a, sub, 'a');
    a.disconnect();
  },

  async token() {
    for (const [index, token] of args.token.entries()) {
      const who = `t${index}`;
      const client = newClient(who, { token });
      const outcome = new Promise((resolve) => {
        client.once('connected', () => resolve('connected'));
        client.once('disconnected', () => resolve('disconnected'));
      });
      client.connect();
      if ((await outcome) === 'connected') {
        const sub = subscribe(client, who, args.channel);
        await sub.ready();
        await publishAndReceive(client, sub, who);
        client.disconnect();
      }
    }
  },

  async shutdown() {
    const a = newClient('a');
    a.connect();
    const sub = subscribe(a, 'a', args.channel);
    await sub.ready();
    const ended = new Promise((resolve) => {
      a.once('connecting', resolve);
      a.once('disconnected', resolve);
    });
    emit('ready');
    await ended;
    // Let the subscription's own events (it goes back to subscribing) come out before stopping.
    await sleep(100);
    a.disconnect();
  },
};

await runScenario(scenarios, args.scenario);
