// Drives the official centrifuge JS SDK (npm `centrifuge`, pinned in package.json) against a running httpstream
// server over a list of transports, tried in order as the SDK does: WebSocket (`ws` package), http_stream and SSE
// (`eventsource` package), the last two sending their commands up through /emulation.
//
//   node transports.mjs --url http://127.0.0.1:PORT --protocol json|protobuf --transports websocket,http_stream
//                       --scenario NAME [options]
//
// Scenarios (each prints one JSON object per line on stdout; tests/test_sdk_websocket.py and test_sdk_sse.py assert
// on them):
//   pubsub    clients "a" and "b" connect and subscribe to --channel; "a" publishes --data; both must receive it.
//   ping      client "a" connects and subscribes, stays connected for --duration seconds while the server pings,
//             then publishes --data and must receive it on the same connection.
//   token     one client per --token (repeatable), one after the other: reports "connected" or the
//             "disconnected" code the server gave; a connected one then publishes --data to --channel.
//   oversize  client "a" connects and subscribes, then publishes --data (meant to be over the server's message size
//             limit) and waits for the SDK's "disconnected".
//   shutdown  client "a" connects and subscribes, prints {"event":"ready"}, then waits until the server ends the
//             connection and reports what the SDK did ("connecting" with the server's code when it reconnects).
//   connlimit client "a" connects; "b" connects to a node whose client_connection_limit is 1: its transport is
//             refused (503) and the SDK keeps reconnecting; after --count refusals "a" disconnects and "b" must
//             connect ({"event":"summary", refusals, disconnected} for "b").
//   recover   client "a" subscribes to --channel (a recoverable one) and disconnects; "b" publishes --count
//             numbered publications of about 1 KiB; "a" connects again, its SDK resubscribes with recover, and
//             must get every one, in order ({"event":"recovered", count, numbers_in_order, recovered}).
//
// Data: --data is JSON text for --protocol json; hex bytes for --protocol protobuf (published as a Uint8Array;
// received Uint8Arrays are printed as {"hex": "..."}).
//
// Besides the SDK's own events, the script reports what went over the wire:
//   ws_open {protocol}          a WebSocket handshake succeeded (protocol: the subprotocol the server echoed)
//   ws_upgrade {extensions}     the handshake's Sec-WebSocket-Extensions (null: none); `ws` offers permessage-deflate
//                               unless --deflate off
//   ws_error {message}          a WebSocket failed (e.g. "Unexpected server response: 404" for a refused upgrade)
//   ws_close {code, reason}     a WebSocket closed, with the close frame's code and reason
//   ws_recv / ws_send {binary, size, ping|pong}   every frame (ping/pong: the frame is an empty command); ws_recv
//                               also has wire: the bytes read from the socket so far (handshake included)
//   stream {status, contentType}    the response to an http_stream POST
//   sse {status, contentType}       the response to an SSE GET
//   emulation {status, pong}        the response to an emulation POST
//
// Exit code: 0 when the scenario's own checks passed, 1 when they failed ({"event":"fail",...}), 2 on timeout
// ({"event":"timeout"}).

import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { EventSource } from 'eventsource';
import { emit, fail, guard, hex, loadCentrifuge, parsePayload, reportConnection, runScenario, sleep } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    protocol: { type: 'string', default: 'json' },
    transports: { type: 'string', default: 'websocket' },
    scenario: { type: 'string' },
    channel: { type: 'string', default: 'chat' },
    data: { type: 'string', default: '{"text":"hello"}' },
    token: { type: 'string', multiple: true, default: [] },
    duration: { type: 'string', default: '7' },
    count: { type: 'string', default: '100' },
    deadline: { type: 'string', default: '20' },
    deflate: { type: 'string', default: 'on' },
  },
});

const ENDPOINTS = {
  websocket: '/connection/websocket',
  http_stream: '/connection/http_stream',
  sse: '/connection/sse',
};

const transportNames = (args.transports || '').split(',').filter(Boolean);
if (
  !args.url ||
  !args.scenario ||
  !['json', 'protobuf'].includes(args.protocol) ||
  transportNames.length === 0 ||
  transportNames.some((name) => !(name in ENDPOINTS))
) {
  console.error(
    'usage: node transports.mjs --url URL --protocol json|protobuf --transports websocket,http_stream,sse ' +
      '--scenario NAME [...]',
  );
  process.exit(64);
}

const protobuf = args.protocol === 'protobuf';
const Centrifuge = await loadCentrifuge(protobuf);

// The transport list as an application writes it: WebSocket on ws://, the HTTP ones on http://.
const transports = transportNames.map((transport) => ({
  transport,
  endpoint: (transport === 'websocket' ? args.url.replace(/^http/, 'ws') : args.url) + ENDPOINTS[transport],
}));

guard(args.deadline);

// What the SDK hands over as publication data, made printable and comparable.
function printable(data) {
  return data instanceof Uint8Array ? { hex: hex(data) } : data;
}

const payload = parsePayload(args.data, protobuf);
const expected = JSON.stringify(printable(payload));

// A server ping and a client pong are both one empty command: "{}" in JSON, the single byte 00 in Protobuf
// (a varint length 0, as a WebSocket binary frame carries it).
function isEmptyCommand(data) {
  if (typeof data === 'string') {
    return data === '{}';
  }
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : data;
  return bytes instanceof Uint8Array && bytes.length === 1 && bytes[0] === 0;
}

function frameSize(data) {
  if (typeof data === 'string') return Buffer.byteLength(data);
  return data.byteLength;
}

// Transports refused with a 503 (a WebSocket upgrade or an http_stream POST), by client.
const refusals = {};

function refused(who) {
  refusals[who] = (refusals[who] || 0) + 1;
}

// The `ws` WebSocket, reporting its handshake, frames and close to stdout.
function spyingWebSocket(who) {
  return class SpyingWebSocket extends WebSocket {
    constructor(url, protocols) {
      // The SDK passes the URL and, for Protobuf, the subprotocol; ws's own options are ours to choose.
      super(url, protocols, { perMessageDeflate: args.deflate !== 'off' });
      this.on('upgrade', (response) =>
        emit('ws_upgrade', { who, extensions: response.headers['sec-websocket-extensions'] ?? null }),
      );
      this.addEventListener('open', () => emit('ws_open', { who, protocol: this.protocol }));
      this.addEventListener('error', (event) => {
        emit('ws_error', { who, message: String(event.message) });
        if (String(event.message).includes('503')) refused(who);
      });
      this.addEventListener('close', (event) =>
        emit('ws_close', { who, code: event.code, reason: event.reason, wasClean: event.wasClean }),
      );
      this.addEventListener('message', (event) => {
        const binary = typeof event.data !== 'string';
        const wire = this._socket ? this._socket.bytesRead : null;
        emit('ws_recv', { who, binary, size: frameSize(event.data), ping: isEmptyCommand(event.data), wire });
      });
    }

    send(data, ...rest) {
      const binary = typeof data !== 'string';
      emit('ws_send', { who, binary, size: frameSize(data), pong: isEmptyCommand(data) });
      return super.send(data, ...rest);
    }
  };
}

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

function isEmulationPong(body) {
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

function spyingFetch(who, kind) {
  return (url, options = {}) => {
    const emulation = String(url).endsWith('/emulation');
    const pong = emulation && isEmulationPong(options.body);
    return globalThis.fetch(url, options).then(
      (response) => {
        const contentType = response.headers.get('content-type');
        if (emulation) {
          emit('emulation', { who, status: response.status, pong });
        } else {
          emit(kind, { who, status: response.status, contentType });
          if (response.status === 503) refused(who);
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

// EventSource (the `eventsource` package), fetching through a spy so the GET's status shows.
function spyingEventSource(who) {
  return class SpyingEventSource extends EventSource {
    constructor(url, init = {}) {
      super(url, { ...init, fetch: spyingFetch(who, 'sse') });
    }
  };
}

function newClient(who, options = {}) {
  const client = new Centrifuge(transports, {
    websocket: spyingWebSocket(who),
    eventsource: spyingEventSource(who),
    // Node has no page origin: a relative emulation endpoint would make every POST fail.
    emulationEndpoint: args.url + '/emulation',
    fetch: spyingFetch(who, 'stream'),
    timeout: 5000,
    minReconnectDelay: 200,
    maxReconnectDelay: 1000,
    ...options,
  });
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

  async oversize() {
    const a = newClient('a');
    a.connect();
    const sub = subscribe(a, 'a', args.channel);
    await sub.ready();
    const ended = new Promise((resolve) => a.once('disconnected', resolve));
    a.publish(args.channel, payload).then(
      () => emit('published', { who: 'a', channel: args.channel }),
      (error) => emit('publish_error', { who: 'a', error }),
    );
    await ended;
    // Let the publish's rejection come out before stopping.
    await sleep(100);
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

scenarios.connlimit = async function connlimit() {
  const a = newClient('a');
  const connectedA = new Promise((resolve) => a.once('connected', resolve));
  a.connect();
  await connectedA;
  const b = newClient('b');
  let disconnected = false;
  b.on('disconnected', () => {
    disconnected = true;
  });
  const connectedB = new Promise((resolve) => b.once('connected', resolve));
  b.connect();
  while ((refusals.b || 0) < Number(args.count)) {
    await sleep(20);
  }
  a.disconnect();
  await connectedB;
  emit('summary', { who: 'b', refusals: refusals.b, disconnected });
  b.disconnect();
};

scenarios.recover = async function recover() {
  const count = Number(args.count);
  const encode = (n) => {
    const text = JSON.stringify({ n, pad: 'x'.repeat(1000) });
    return protobuf ? new TextEncoder().encode(text) : JSON.parse(text);
  };
  const decode = (data) => (protobuf ? JSON.parse(new TextDecoder().decode(data)) : data);
  const a = newClient('a');
  const numbers = [];
  const sub = a.newSubscription(args.channel);
  sub.on('publication', (ctx) => numbers.push(decode(ctx.data).n));
  let recovered = null;
  sub.on('subscribed', (ctx) => {
    if (ctx.wasRecovering) recovered = ctx.recovered;
  });
  a.connect();
  sub.subscribe();
  await sub.ready();
  a.disconnect();
  const b = newClient('b');
  b.connect();
  for (let n = 0; n < count; n++) {
    await b.publish(args.channel, encode(n));
  }
  b.disconnect();
  a.connect();
  while (numbers.length < count) {
    await sleep(50);
  }
  const inOrder = numbers.every((n, index) => n === index);
  emit('recovered', { who: 'a', count: numbers.length, numbers_in_order: inOrder, recovered });
  if (!inOrder || recovered !== true) {
    fail(`recovered=${recovered}, numbers ${JSON.stringify(numbers.slice(0, 20))}...`);
  }
  a.disconnect();
};

await runScenario(scenarios, args.scenario);
