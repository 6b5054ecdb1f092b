// Drives the official centrifuge JS SDK (npm `centrifuge`, pinned in package.json) against a running httpstream
// server over transport http_stream (commands going up through /emulation), through the protocol features an
// application relies on beyond publish/subscribe: tokens and their refresh, subscription tokens, presence,
// join/leave, history, recovery, RPC and fossil deltas.
//
//   node protocol.mjs --url http://127.0.0.1:PORT --protocol json|protobuf --scenario NAME --secret KEY [options]
//
// Scenarios (each prints one JSON object per line on stdout; tests/test_sdk_protocol.py asserts on them):
//   refresh    "r" connects with a token expiring in --ttl seconds and a getToken that mints a fresh one; "lazy"
//              the same but its getToken never answers. After --duration seconds "r" publishes and must receive
//              it; "lazy" must have been cut off by the server meanwhile (it is waited for).
//   expired    "e1" connects with an expired token and a getToken; "e2" with an expired token and no getToken.
//   subtoken   "u" (user alice) subscribes to --channel (a `$` channel) without a token, then with a getToken
//              that mints a subscription token, publishes and receives; "m" (user mallory) subscribes with a
//              token minted for another channel.
//   presence   "a" and "b" (users user-a, user-b) subscribe to --channel; "a" reads presence and presence stats;
//              "b" unsubscribes and "a" reads the stats again.
//   joinleave  "b" subscribes to --channel; "a" subscribes, unsubscribes, subscribes again and disconnects.
//   history    "p" subscribes to --channel, publishes {"n":1..5} and runs several history queries.
//   recovery   "s" subscribes to --channel; "p" publishes --before publications; the test cuts the network of "s"
//              (its stream is aborted and its next requests held back); "p" publishes --missed more; the network
//              comes back, "s" reconnects and resubscribes; "p" publishes one more, which "s" must receive.
//   rpc        "a" (user rpc-user) calls echo, whoami, fail (in-process handlers of tests/embedded_server.py),
//              backend.echo and backend.fail (answered by the test's proxy backend); Protobuf also echoes bytes
//              that are not JSON both ways.
//   delta      "d" subscribes to --channel with delta 'fossil', "n" without; "p" publishes --count similar payloads,
//              which both must receive exactly as published. With --cutafter K, the network of "d" is cut after
//              publication K and restored after --missed more (recovered on resubscribe, if the channel allows).
//
// Data: JSON values; the Protobuf client publishes them as Uint8Array of their JSON text, and what it receives is
// decoded back from UTF-8 JSON text for printing ("hex" is added where exact bytes matter).
//
// Besides the SDK's events, the script reports the wire, parsed from the bytes the SDK sent and received:
//   emulation {status, commands}   one emulation POST: its status and the kinds of the commands in it
//   stream {status, contentType}   the response to an http_stream POST
//   recv {kind, id?, ...}          one reply or push read from a stream (kind "ping" for an empty reply;
//                                  "push:pub" etc. for pushes, with channel, delta and size for publications;
//                                  error code; expires/ttl of connect and refresh results; recovery fields of a
//                                  subscribe result)
//   network {state}                the test cut ("down") or restored ("up") a client's network
// Every event carries `t`, milliseconds since the script started.
//
// Exit code: 0 when the scenario's own checks passed, 1 when they failed ({"event":"fail",...}), 2 on timeout
// ({"event":"timeout"}).

import { createHmac } from 'node:crypto';
import { parseArgs } from 'node:util';
import { emit, fail, guard, hex, loadCentrifuge, runScenario, sleep, stampEvents } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    protocol: { type: 'string', default: 'json' },
    scenario: { type: 'string' },
    secret: { type: 'string', default: '' },
    channel: { type: 'string', default: 'chat' },
    ttl: { type: 'string', default: '3' },
    duration: { type: 'string', default: '6' },
    before: { type: 'string', default: '2' },
    missed: { type: 'string', default: '3' },
    count: { type: 'string', default: '8' },
    cutafter: { type: 'string', default: '0' },
    deadline: { type: 'string', default: '30' },
  },
});

if (!args.url || !args.scenario || !['json', 'protobuf'].includes(args.protocol)) {
  console.error('usage: node protocol.mjs --url URL --protocol json|protobuf --scenario NAME --secret KEY [...]');
  process.exit(64);
}

const protobuf = args.protocol === 'protobuf';
const Centrifuge = await loadCentrifuge(protobuf);
const started = Date.now();

// Every event carries `t`, milliseconds since the script started: tests/test_sdk_protocol.py compares them.
stampEvents(() => ({ t: Date.now() - started }));
guard(args.deadline);

// Resolves with the first event of `emitter` named `name` that passes `test`, or fails the script after `ms`.
function waitEvent(emitter, name, test = () => true, ms = 10000, what = name) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => fail(`no ${what} within ${ms} ms`), ms);
    const listener = (ctx) => {
      if (test(ctx)) {
        clearTimeout(timer);
        emitter.removeListener(name, listener);
        resolve(ctx);
      }
    };
    emitter.on(name, listener);
  });
}

async function until(check, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) fail(`${what} not reached within ${ms} ms`);
    await sleep(50);
  }
}

// ---- payloads ----

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

// What the application passes to publish/rpc for a JSON value.
function encode(value) {
  return protobuf ? utf8.encode(JSON.stringify(value)) : value;
}

// A received payload as a JSON value (Protobuf: the bytes read as JSON text).
function decode(data) {
  if (!(data instanceof Uint8Array)) return data === undefined ? null : data;
  if (data.length === 0) return null;
  return JSON.parse(fromUtf8.decode(data));
}

// ---- tokens (HS256, as the application backend would mint them) ----

function now() {
  return Math.floor(Date.now() / 1000);
}

function jwt(claims) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signed = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${signed}.${createHmac('sha256', args.secret).update(signed).digest('base64url')}`;
}

function connectionToken(user, ttl) {
  return jwt({ sub: user, exp: now() + ttl });
}

function subscriptionToken(user, channel, ttl, extra = {}) {
  return jwt({ sub: user, channel, exp: now() + ttl, ...extra });
}

// ---- the wire: a minimal Protobuf reader, reply and command classification ----

function protoFields(bytes) {
  const fields = [];
  let i = 0;
  const varint = () => {
    let value = 0;
    let shift = 0;
    for (;;) {
      if (i >= bytes.length) throw new Error('truncated varint');
      const byte = bytes[i++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
      shift += 7;
    }
  };
  while (i < bytes.length) {
    const key = varint();
    const number = Math.floor(key / 8);
    const type = key & 7;
    if (type === 0) {
      fields.push([number, varint()]);
    } else if (type === 2) {
      const length = varint();
      fields.push([number, bytes.subarray(i, i + length)]);
      i += length;
    } else if (type === 1) {
      i += 8;
    } else if (type === 5) {
      i += 4;
    } else {
      throw new Error(`wire type ${type}`);
    }
  }
  return fields;
}

function field(fields, number) {
  const found = fields.find(([n]) => n === number);
  return found === undefined ? undefined : found[1];
}

// Length-prefixed messages (uvarint length, then the message), as Protobuf streams and emulation data carry them.
function splitDelimited(bytes) {
  const messages = [];
  let i = 0;
  while (i < bytes.length) {
    let length = 0;
    let shift = 0;
    for (;;) {
      const byte = bytes[i++];
      length += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) break;
      shift += 7;
    }
    messages.push(bytes.subarray(i, i + length));
    i += length;
  }
  return messages;
}

const COMMANDS = {
  4: 'connect', 5: 'subscribe', 6: 'unsubscribe', 7: 'publish', 8: 'presence', 9: 'presence_stats',
  10: 'history', 11: 'ping', 12: 'send', 13: 'rpc', 14: 'refresh', 15: 'sub_refresh',
};
const RESULTS = {
  2: 'error', 5: 'connect', 6: 'subscribe', 7: 'unsubscribe', 8: 'publish', 9: 'presence', 10: 'presence_stats',
  11: 'history', 12: 'ping', 13: 'rpc', 14: 'refresh', 15: 'sub_refresh',
};
const PUSHES = {
  4: 'pub', 5: 'join', 6: 'leave', 7: 'unsubscribe', 8: 'message', 9: 'subscribe', 10: 'connect',
  11: 'disconnect', 12: 'refresh',
};

function commandKind(command) {
  const kinds = Object.keys(command).filter((key) => key !== 'id');
  return kinds.length ? kinds[0] : 'pong';
}

// The kinds of the commands in an emulation POST body.
function emulationCommands(body) {
  if (typeof body === 'string') {
    const data = JSON.parse(body).data;
    return data.split('\n').filter(Boolean).map((line) => commandKind(JSON.parse(line)));
  }
  const data = field(protoFields(body), 3) || new Uint8Array(0);
  return splitDelimited(data).map((command) => {
    const number = protoFields(command).map(([n]) => n).find((n) => n in COMMANDS);
    return number === undefined ? 'pong' : COMMANDS[number];
  });
}

// One reply read from a stream, described for a `recv` event. `size` is its encoded size.
function describeJSONReply(reply, size) {
  const out = { size };
  if (reply.id) out.id = reply.id;
  if (reply.push) {
    const push = reply.push;
    const kind = Object.keys(push).find((key) => key !== 'channel') || 'empty';
    out.kind = `push:${kind}`;
    if (push.channel) out.channel = push.channel;
    if (kind === 'pub') {
      out.delta = Boolean(push.pub.delta);
      out.offset = push.pub.offset || 0;
    }
    if (kind === 'disconnect') out.code = push.disconnect.code;
    return out;
  }
  const kind = Object.keys(reply).find((key) => key !== 'id');
  if (kind === undefined) {
    out.kind = reply.id ? 'empty' : 'ping';
    return out;
  }
  out.kind = kind;
  const result = reply[kind];
  if (kind === 'error') out.code = result.code;
  if (kind === 'connect' || kind === 'refresh') Object.assign(out, { expires: Boolean(result.expires), ttl: result.ttl || 0 });
  if (kind === 'subscribe') {
    Object.assign(out, {
      recoverable: Boolean(result.recoverable), wasRecovering: Boolean(result.was_recovering),
      recovered: Boolean(result.recovered), publications: (result.publications || []).length,
      offset: result.offset || 0, delta: Boolean(result.delta),
    });
  }
  return out;
}

function describeProtoReply(bytes, size) {
  const fields = protoFields(bytes);
  const out = { size };
  const id = field(fields, 1);
  if (id) out.id = id;
  const push = field(fields, 4);
  if (push !== undefined) {
    const pushFields = protoFields(push);
    const [number, value] = pushFields.find(([n]) => n in PUSHES) || [0, undefined];
    const kind = PUSHES[number] || 'empty';
    out.kind = `push:${kind}`;
    const channel = field(pushFields, 2);
    if (channel) out.channel = Buffer.from(channel).toString('utf8');
    if (kind === 'pub') {
      const pub = protoFields(value);
      out.delta = Boolean(field(pub, 8));
      out.offset = field(pub, 6) || 0;
    }
    if (kind === 'disconnect') out.code = field(protoFields(value), 1) || 0;
    return out;
  }
  const [number, value] = fields.find(([n]) => n in RESULTS) || [0, undefined];
  if (number === 0) {
    out.kind = id ? 'empty' : 'ping';
    return out;
  }
  out.kind = RESULTS[number];
  const result = protoFields(value);
  if (out.kind === 'error') out.code = field(result, 1) || 0;
  if (out.kind === 'connect' || out.kind === 'refresh') {
    Object.assign(out, { expires: Boolean(field(result, 3)), ttl: field(result, 4) || 0 });
  }
  if (out.kind === 'subscribe') {
    Object.assign(out, {
      recoverable: Boolean(field(result, 3)), wasRecovering: Boolean(field(result, 12)),
      recovered: Boolean(field(result, 8)), publications: result.filter(([n]) => n === 7).length,
      offset: field(result, 9) || 0, delta: Boolean(field(result, 13)),
    });
  }
  return out;
}

// Cuts a stream's bytes into replies and reports each one; the bytes themselves pass on untouched.
function streamParser(who) {
  let pending = Buffer.alloc(0);
  return (chunk) => {
    pending = Buffer.concat([pending, Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)]);
    for (;;) {
      if (!protobuf) {
        const end = pending.indexOf(0x0a);
        if (end < 0) return;
        const line = pending.subarray(0, end);
        pending = pending.subarray(end + 1);
        if (line.length) emit('recv', { who, ...describeJSONReply(JSON.parse(line.toString('utf8')), line.length) });
        continue;
      }
      let length = 0;
      let shift = 0;
      let i = 0;
      for (;;) {
        if (i >= pending.length) return; // the length prefix itself is incomplete
        const byte = pending[i++];
        length += (byte & 0x7f) * 2 ** shift;
        if (byte < 0x80) break;
        shift += 7;
      }
      if (pending.length < i + length) return;
      const message = new Uint8Array(pending.subarray(i, i + length));
      pending = pending.subarray(i + length);
      emit('recv', { who, ...describeProtoReply(message, i + length) });
    }
  };
}

// ---- the network of each client: a spying fetch the test can cut ----

const networks = {};

function network(who) {
  if (!networks[who]) networks[who] = { down: false, waiting: [], streams: new Set() };
  return networks[who];
}

// Simulate a network failure: the open stream breaks (its reader errors, as on a reset connection) and requests
// wait until restore(), so the server sees the connection go and the client cannot come back meanwhile.
function cut(who) {
  const net = network(who);
  net.down = true;
  emit('network', { who, state: 'down' });
  for (const controller of net.streams) controller.abort(new Error('network cut by the test'));
  net.streams.clear();
}

function restore(who) {
  const net = network(who);
  net.down = false;
  emit('network', { who, state: 'up' });
  for (const resume of net.waiting.splice(0)) resume();
}

function spyingFetch(who) {
  return async (url, options = {}) => {
    const net = network(who);
    if (net.down) await new Promise((resume) => net.waiting.push(resume));
    const emulation = String(url).endsWith('/emulation');
    if (emulation) {
      let commands;
      try {
        commands = emulationCommands(options.body);
      } catch (error) {
        commands = [`undecodable: ${error.message}`];
      }
      try {
        const response = await globalThis.fetch(url, options);
        emit('emulation', { who, status: response.status, commands });
        return response;
      } catch (error) {
        if (!(error && error.name === 'AbortError')) emit('fetch_error', { who, emulation, message: String(error?.message) });
        throw error;
      }
    }
    const controller = new AbortController();
    net.streams.add(controller);
    const signal = options.signal ? AbortSignal.any([options.signal, controller.signal]) : controller.signal;
    let response;
    try {
      response = await globalThis.fetch(url, { ...options, signal });
    } catch (error) {
      net.streams.delete(controller);
      if (!(error && error.name === 'AbortError')) emit('fetch_error', { who, emulation, message: String(error?.message) });
      throw error;
    }
    emit('stream', { who, status: response.status, contentType: response.headers.get('content-type') });
    if (!response.body) return response;
    const parse = streamParser(who);
    const spied = response.body.pipeThrough(
      new TransformStream({
        transform(chunk, out) {
          try {
            parse(chunk);
          } catch (error) {
            emit('spy_error', { who, message: String(error?.message) });
          }
          out.enqueue(chunk);
        },
        flush() {
          net.streams.delete(controller);
        },
      }),
    );
    return new Response(spied, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}

// ---- SDK clients and subscriptions ----

function newClient(who, options = {}) {
  const client = new Centrifuge(
    [{ transport: 'http_stream', endpoint: args.url + '/connection/http_stream' }],
    {
      // Node has no page origin: a relative emulation endpoint would make every POST fail.
      emulationEndpoint: args.url + '/emulation',
      fetch: spyingFetch(who),
      timeout: 5000,
      minReconnectDelay: 100,
      maxReconnectDelay: 500,
      ...options,
    },
  );
  client.on('state', (ctx) => emit('state', { who, from: ctx.oldState, to: ctx.newState }));
  client.on('connecting', (ctx) => emit('connecting', { who, code: ctx.code, reason: ctx.reason }));
  client.on('connected', (ctx) => emit('connected', { who, client: ctx.client, transport: ctx.transport }));
  client.on('disconnected', (ctx) => emit('disconnected', { who, code: ctx.code, reason: ctx.reason }));
  client.on('error', (ctx) => emit('error', { who, type: ctx.type, error: ctx.error }));
  return client;
}

function clientInfo(info) {
  if (!info) return null;
  const out = { client: info.client, user: info.user };
  if (info.chanInfo && !(info.chanInfo instanceof Uint8Array && info.chanInfo.length === 0)) {
    out.chanInfo = decode(info.chanInfo);
  }
  return out;
}

function offsetOf(value) {
  return value === undefined || value === null ? 0 : Number(value);
}

function newSubscription(client, who, channel, options = {}) {
  const sub = client.newSubscription(channel, options);
  sub.on('subscribing', (ctx) => emit('subscribing', { who, channel, code: ctx.code, reason: ctx.reason }));
  sub.on('subscribed', (ctx) =>
    emit('subscribed', {
      who, channel,
      recoverable: ctx.recoverable, positioned: ctx.positioned,
      wasRecovering: ctx.wasRecovering, recovered: ctx.recovered,
      hasRecoveredPublications: ctx.hasRecoveredPublications,
      streamPosition: ctx.streamPosition ? { offset: offsetOf(ctx.streamPosition.offset), epoch: ctx.streamPosition.epoch } : null,
    }),
  );
  sub.on('unsubscribed', (ctx) => emit('unsubscribed', { who, channel, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => emit('sub_error', { who, channel, type: ctx.type, error: ctx.error }));
  sub.on('publication', (ctx) =>
    emit('publication', { who, channel: ctx.channel, data: decode(ctx.data), offset: offsetOf(ctx.offset), info: clientInfo(ctx.info) }),
  );
  sub.on('join', (ctx) => emit('join', { who, channel: ctx.channel, info: clientInfo(ctx.info) }));
  sub.on('leave', (ctx) => emit('leave', { who, channel: ctx.channel, info: clientInfo(ctx.info) }));
  return sub;
}

function subscribe(client, who, channel, options = {}) {
  const sub = newSubscription(client, who, channel, options);
  sub.subscribe();
  return sub;
}

// Collects what a subscription receives, and waits for a publication whose data has a given `n`.
function collector(sub) {
  const received = [];
  sub.on('publication', (ctx) => received.push({ data: decode(ctx.data), offset: offsetOf(ctx.offset) }));
  return {
    received,
    waitFor: (n, ms = 10000) =>
      until(() => received.some((pub) => pub.data && pub.data.n === n), ms, `publication n=${n} at ${sub.channel}`),
  };
}

async function connected(client) {
  if (client.state === 'connected') return;
  await waitEvent(client, 'connected');
}

// ---- scenarios ----

const scenarios = {
  async refresh() {
    const ttl = Number(args.ttl);
    let minted = 0;
    const r = newClient('r', {
      token: connectionToken('refresh-user', ttl),
      getToken: async () => {
        minted += 1;
        emit('get_token', { who: 'r', n: minted });
        return connectionToken('refresh-user', ttl);
      },
    });
    const lazy = newClient('lazy', {
      token: connectionToken('lazy-user', ttl),
      getToken: () => {
        emit('get_token', { who: 'lazy' });
        return new Promise(() => {}); // the backend never answers
      },
    });
    const lazyCut = waitEvent(lazy, 'connecting', () => true, (ttl + 5) * 1000, 'server disconnect of "lazy"');
    r.connect();
    lazy.connect();
    await Promise.all([connected(r), connected(lazy)]);
    const sub = subscribe(r, 'r', args.channel);
    const got = collector(sub);
    await sub.ready();
    await sleep(Number(args.duration) * 1000);
    emit('checkpoint', { name: 'published after duration', state: r.state });
    await r.publish(args.channel, encode({ n: 1, text: 'still here' }));
    await got.waitFor(1);
    await lazyCut;
    r.disconnect();
    lazy.disconnect();
  },

  async expired() {
    const e1 = newClient('e1', {
      token: connectionToken('expired-user', -10),
      getToken: async () => {
        emit('get_token', { who: 'e1' });
        return connectionToken('expired-user', 3600);
      },
    });
    e1.connect();
    await connected(e1);
    e1.disconnect();

    const e2 = newClient('e2', { token: connectionToken('expired-user', -10) });
    const gone = waitEvent(e2, 'disconnected');
    e2.connect();
    await gone;
    await sleep(300); // nothing more must happen: no reconnect
  },

  async subtoken() {
    const channel = args.channel;
    const u = newClient('u', { token: connectionToken('alice', 3600) });
    u.connect();
    await connected(u);
    const plain = newSubscription(u, 'u', channel);
    const refused = waitEvent(plain, 'unsubscribed');
    plain.subscribe();
    await refused;
    u.removeSubscription(plain);

    const sub = newSubscription(u, 'u', channel, {
      getToken: async (ctx) => {
        emit('get_sub_token', { who: 'u', channel: ctx.channel });
        return subscriptionToken('alice', ctx.channel, 3600, { info: { role: 'moderator' } });
      },
    });
    sub.subscribe();
    const got = collector(sub);
    await sub.ready();
    await u.publish(channel, encode({ n: 1, text: 'private' }));
    await got.waitFor(1);
    u.disconnect();

    const m = newClient('m', { token: connectionToken('mallory', 3600) });
    m.connect();
    await connected(m);
    const gone = waitEvent(m, 'disconnected');
    newSubscription(m, 'm', channel, {
      getToken: async () => subscriptionToken('mallory', `${channel}-other`, 3600),
    }).subscribe();
    await gone;
  },

  async presence() {
    const channel = args.channel;
    const a = newClient('a', { token: connectionToken('user-a', 3600) });
    const b = newClient('b', { token: connectionToken('user-b', 3600) });
    a.connect();
    b.connect();
    const subA = subscribe(a, 'a', channel);
    const subB = subscribe(b, 'b', channel);
    await Promise.all([subA.ready(), subB.ready()]);
    const presence = await subA.presence();
    const clients = {};
    for (const [id, info] of Object.entries(presence.clients)) clients[id] = { client: info.client, user: info.user };
    emit('presence', { who: 'a', clients });
    emit('presence_stats', { who: 'a', ...(await subA.presenceStats()) });
    emit('presence_stats', { who: 'b', ...(await subB.presenceStats()) });
    subB.unsubscribe();
    const after = await until(async () => {
      const stats = await subA.presenceStats();
      return stats.numClients === 1 ? stats : null;
    }, 5000, 'presence of one client after b unsubscribed');
    emit('presence_stats', { who: 'a', after: 'b unsubscribed', ...after });
    a.disconnect();
    b.disconnect();
  },

  async joinleave() {
    const channel = args.channel;
    const b = newClient('b', { token: connectionToken('user-b', 3600) });
    b.connect();
    const subB = subscribe(b, 'b', channel);
    await subB.ready();
    const a = newClient('a', { token: connectionToken('user-a', 3600) });
    a.connect();
    const aConnected = waitEvent(a, 'connected');
    const aClient = (await aConnected).client;
    const ofA = (ctx) => ctx.info && ctx.info.client === aClient;
    const subA = newSubscription(a, 'a', channel);
    let seen = waitEvent(subB, 'join', ofA, 5000, 'join of a');
    subA.subscribe();
    await subA.ready();
    await seen;
    seen = waitEvent(subB, 'leave', ofA, 5000, 'leave of a (unsubscribe)');
    subA.unsubscribe();
    await seen;
    seen = waitEvent(subB, 'join', ofA, 5000, 'second join of a');
    subA.subscribe();
    await seen;
    seen = waitEvent(subB, 'leave', ofA, 5000, 'leave of a (disconnect)');
    a.disconnect();
    await seen;
    b.disconnect();
  },

  async history() {
    const channel = args.channel;
    const p = newClient('p');
    p.connect();
    const sub = subscribe(p, 'p', channel);
    const got = collector(sub);
    await sub.ready();
    for (let n = 1; n <= 5; n++) await p.publish(channel, encode({ n }));
    await got.waitFor(5);
    const report = async (query, options) => {
      const result = await sub.history(options);
      emit('history', {
        who: 'p', query, offset: offsetOf(result.offset), epoch: result.epoch,
        publications: result.publications.map((pub) => ({ offset: offsetOf(pub.offset), data: decode(pub.data) })),
      });
      return result;
    };
    const top = await report('position only', {});
    await report('limit 2', { limit: 2 });
    await report('limit 2 reverse', { limit: 2, reverse: true });
    await report('all', { limit: -1 });
    await report('since 2 limit 2', { since: { offset: 2, epoch: top.epoch }, limit: 2 });
    await report('since 3 reverse', { since: { offset: 3, epoch: top.epoch }, limit: 10, reverse: true });
    const wrongEpoch = await sub.history({ since: { offset: 1, epoch: 'not-the-epoch' }, limit: 2 }).catch((e) => e);
    emit('history', { who: 'p', query: 'wrong epoch', error: { code: wrongEpoch.code, message: wrongEpoch.message } });
    p.disconnect();
  },

  async recovery() {
    const channel = args.channel;
    const before = Number(args.before);
    const missed = Number(args.missed);
    const s = newClient('s');
    const p = newClient('p');
    s.connect();
    p.connect();
    const sub = subscribe(s, 's', channel);
    const got = collector(sub);
    await sub.ready();
    await connected(p);
    let n = 0;
    for (; n < before; ) await p.publish(channel, encode({ n: ++n }));
    await got.waitFor(before);

    const resubscribed = waitEvent(sub, 'subscribed', () => true, 15000, 'resubscription of s');
    const left = waitEvent(s, 'state', (ctx) => ctx.newState === 'connecting', 5000, 's reconnecting after the cut');
    cut('s');
    await left;
    for (let i = 0; i < missed; i++) await p.publish(channel, encode({ n: ++n }));
    emit('checkpoint', { name: 'missed published', n });
    restore('s');
    await resubscribed;
    await p.publish(channel, encode({ n: ++n }));
    await got.waitFor(n);
    await sleep(200); // a duplicate or late publication would show up now
    emit('received', { who: 's', publications: got.received });
    s.disconnect();
    p.disconnect();
  },

  async rpc() {
    const a = newClient('a', { token: connectionToken('rpc-user', 3600) });
    a.connect();
    const aClient = (await waitEvent(a, 'connected')).client;
    const call = async (method, data, label = method) => {
      try {
        const result = await a.rpc(method, data);
        const out = { who: 'a', method: label };
        if (result.data instanceof Uint8Array) {
          out.hex = hex(result.data);
          try {
            out.data = decode(result.data);
          } catch {
            out.data = null;
          }
        } else {
          out.data = result.data === undefined ? null : result.data;
        }
        emit('rpc', out);
      } catch (error) {
        emit('rpc', { who: 'a', method: label, error: { code: error.code, message: error.message } });
      }
    };
    const value = { text: 'héllo ☃ "quoted"', n: [1, 2.5, null, -7], nested: { ok: true, empty: {} } };
    await call('echo', encode(value));
    await call('whoami', encode({}));
    await call('fail', encode({}));
    await call('backend.echo', encode(value));
    await call('backend.fail', encode({}));
    if (protobuf) {
      const bytes = new Uint8Array([0x00, 0x0a, 0x0d, 0xff, 0x80, 0x81, ...utf8.encode('{"not":"json"'), ...Array.from({ length: 256 }, (_, i) => i)]);
      await call('echo', bytes, 'echo bytes');
      await call('backend.echo', bytes, 'backend.echo bytes');
    }
    emit('client', { who: 'a', client: aClient });
    a.disconnect();
  },

  async delta() {
    const channel = args.channel;
    const count = Number(args.count);
    const cutAfter = Number(args.cutafter);
    const missed = Number(args.missed);
    const d = newClient('d');
    const n = newClient('n');
    const p = newClient('p');
    d.connect();
    n.connect();
    p.connect();
    const subD = subscribe(d, 'd', channel, { delta: 'fossil' });
    const subN = subscribe(n, 'n', channel);
    const gotD = collector(subD);
    const gotN = collector(subN);
    await Promise.all([subD.ready(), subN.ready(), connected(p)]);
    const items = Array.from({ length: 40 }, (_, i) => ({ id: i, name: `item-${i} ☃ é`, price: i * 1.5, tags: ['a', 'b'] }));
    const published = [];
    let down = false;
    let resubscribed = null;
    for (let k = 1; k <= count; k++) {
      items[k % items.length] = { ...items[k % items.length], price: 1000 + k, note: `changed at ${k}` };
      const value = { n: k, version: `v${k}`, items };
      published.push(JSON.parse(JSON.stringify(value)));
      await p.publish(channel, encode(value));
      await gotN.waitFor(k);
      if (!down) await gotD.waitFor(k);
      if (k === cutAfter) {
        // "d" misses the next `missed` publications and recovers them on resubscribe.
        resubscribed = waitEvent(subD, 'subscribed', () => true, 15000, 'resubscription of d');
        const left = waitEvent(d, 'state', (ctx) => ctx.newState === 'connecting', 5000, 'd reconnecting after the cut');
        cut('d');
        await left;
        down = true;
      }
      if (down && k === cutAfter + missed) {
        restore('d');
        await resubscribed;
        await gotD.waitFor(k);
        down = false;
      }
    }
    const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
    const mismatches = [];
    for (const [who, got] of [['d', gotD], ['n', gotN]]) {
      if (got.received.length !== count) mismatches.push(`${who} received ${got.received.length}, expected ${count}`);
      got.received.forEach((pub, i) => {
        if (!same(pub.data, published[i])) mismatches.push(`${who} publication ${i + 1} differs: ${JSON.stringify(pub.data).slice(0, 200)}`);
      });
    }
    emit('delta_stats', { who: 'd', ...subD.deltaStats() });
    emit('payload', { size: JSON.stringify(published[count - 1]).length });
    if (mismatches.length) fail(mismatches.join('; '));
    d.disconnect();
    n.disconnect();
    p.disconnect();
  },
};

await runScenario(scenarios, args.scenario);
