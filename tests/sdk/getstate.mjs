// Drives the official centrifuge JS SDK's `getState` subscription option (SDK >= 5.8, "requires Centrifugo >= 6.8")
// against a running httpstream server over WebSocket, for tests/test_sdk_getstate.py.
//
//   node getstate.mjs --url http://127.0.0.1:PORT --protocol json|protobuf --apikey KEY --channel NAME
//                     --lose trim|remove|expire [--before N] [--missed M] [--wait SECONDS] [--deadline SECONDS]
//
// The script plays an application: its "database" is the list of values it published, each stored there first and
// then published through the server API (POST /api/publish), as a backend does. Its getState reads the stream's
// top position first (POST /api/history with limit 0), then a snapshot of the database, and returns the position:
// the order the SDK documents, so whatever was published after the snapshot is recovered by the subscribe.
//
// "s" subscribes with getState (the SDK asks for the application's state, then subscribes recovering from the
// position it returned); the application publishes --before values, which "s" receives; "s" disconnects; the
// application publishes --missed more and the stream loses them for "s" (--lose):
//   trim     nothing more: --missed is above the channel's history_size, the oldest missed were trimmed
//   remove   the server API's history_remove (the stream keeps its epoch and top, not its publications)
//   expire   wait --wait seconds, longer than the channel's history_meta_ttl: the stream is gone, a new epoch
// "s" connects again: its recovery fails, the server answers 112, the SDK calls getState again (which publishes
// one value after taking its snapshot, as another writer might) and subscribes from the returned position;
// the application publishes one last value, which "s" must receive.
//
// Events (one JSON object per line, "event" first, `who` where a client is concerned):
//   get_state {call, offset, epoch, state}   the application's getState: the position it read, the snapshot
//   subscribed {recoverable, wasRecovering, recovered, streamPosition}
//   publication {data, offset}               what "s" received
//   wire {dir, kind, id?, code?, flag?}       subscribe commands sent (with their flag) and error replies read
//   summary {database, loaded, received}     at the end: every value published, loaded by getState, received
// The script itself fails when a value of the database is neither loaded nor received.

import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { callAPI, emit, fail, guard, loadCentrifuge, runScenario, sleep } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    protocol: { type: 'string', default: 'json' },
    apikey: { type: 'string', default: '' },
    channel: { type: 'string', default: 'chat' },
    lose: { type: 'string', default: 'trim' },
    before: { type: 'string', default: '2' },
    missed: { type: 'string', default: '5' },
    wait: { type: 'string', default: '0' },
    deadline: { type: 'string', default: '30' },
  },
});

if (!args.url || !['json', 'protobuf'].includes(args.protocol) || !['trim', 'remove', 'expire'].includes(args.lose)) {
  console.error(
    'usage: node getstate.mjs --url URL --protocol json|protobuf --apikey KEY --channel NAME --lose trim|remove|expire',
  );
  process.exit(64);
}

const protobuf = args.protocol === 'protobuf';
const Centrifuge = await loadCentrifuge(protobuf);
guard(args.deadline);

// ---- the application's side: its database, the server API ----

const database = [];

const api = (method, body) => callAPI(args.url, args.apikey, method, body);

// Stored first, then published: the backend's order.
async function publish(n) {
  database.push(n);
  await api('publish', { channel: args.channel, data: { n } });
}

let getStateCalls = 0;
const loaded = new Set();

async function getState() {
  const call = ++getStateCalls;
  // The position first: a lower bound of what the snapshot holds.
  const top = await api('history', { channel: args.channel, limit: 0 });
  const snapshot = [...database];
  snapshot.forEach((n) => loaded.add(n));
  const position = { offset: top.offset || 0, epoch: top.epoch || '' };
  emit('get_state', { who: 's', call, ...position, state: snapshot });
  if (call > 1) {
    // Another writer, after the snapshot: only the subscribe's recovery can bring this one.
    await publish(database.length + 1);
  }
  return position;
}

// ---- the wire, as "s" sees it: subscribe commands out, error replies in ----

function varint(bytes, at) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at.i++];
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return value;
    shift += 7;
  }
}

function protoFields(bytes) {
  const fields = [];
  const at = { i: 0 };
  while (at.i < bytes.length) {
    const key = varint(bytes, at);
    const type = key & 7;
    if (type === 0) fields.push([Math.floor(key / 8), varint(bytes, at)]);
    else if (type === 2) {
      const length = varint(bytes, at);
      fields.push([Math.floor(key / 8), bytes.subarray(at.i, at.i + length)]);
      at.i += length;
    } else if (type === 1) at.i += 8;
    else if (type === 5) at.i += 4;
    else throw new Error(`wire type ${type}`);
  }
  return fields;
}

const field = (fields, number) => fields.find(([n]) => n === number)?.[1];

function delimited(bytes) {
  const messages = [];
  const at = { i: 0 };
  while (at.i < bytes.length) {
    const length = varint(bytes, at);
    messages.push(bytes.subarray(at.i, at.i + length));
    at.i += length;
  }
  return messages;
}

function asBytes(data) {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (Array.isArray(data)) return new Uint8Array(Buffer.concat(data));
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

// Each command or reply of a frame, as {id, subscribe?, error?} (the subscribe's flag, the error's code).
function parseFrame(data, outgoing) {
  if (typeof data === 'string' || !protobuf) {
    return String(data).split('\n').filter(Boolean).map((line) => {
      const message = JSON.parse(line);
      const subscribe = message.subscribe;
      return { id: message.id, subscribe: Boolean(subscribe), flag: subscribe?.flag, code: message.error?.code };
    });
  }
  return delimited(asBytes(data)).map((message) => {
    const fields = protoFields(message);
    const id = field(fields, 1);
    if (outgoing) {
      const subscribe = field(fields, 5);
      return { id, subscribe: subscribe !== undefined, flag: subscribe && field(protoFields(subscribe), 14) };
    }
    const error = field(fields, 2);
    return { id, subscribe: false, code: error && field(protoFields(error), 1) };
  });
}

class SpyingWebSocket extends WebSocket {
  constructor(...rest) {
    super(...rest);
    this.addEventListener('message', (event) => {
      for (const reply of parseFrame(event.data, false)) {
        if (reply.code) emit('wire', { who: 's', dir: 'in', kind: 'error', id: reply.id, code: reply.code });
      }
    });
  }

  send(data, ...rest) {
    for (const command of parseFrame(data, true)) {
      if (command.subscribe) {
        emit('wire', { who: 's', dir: 'out', kind: 'subscribe', id: command.id, flag: command.flag || 0 });
      }
    }
    return super.send(data, ...rest);
  }
}

// ---- the SDK ----

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decode(data) {
  return data instanceof Uint8Array ? JSON.parse(utf8.decode(data)) : data;
}

function until(check, ms, what) {
  return new Promise((resolve) => {
    const deadline = Date.now() + ms;
    const poll = () => {
      if (check()) resolve();
      else if (Date.now() > deadline) fail(`${what} not reached within ${ms} ms`);
      else setTimeout(poll, 20);
    };
    poll();
  });
}

const scenarios = {
  async getstate() {
    const s = new Centrifuge(args.url.replace(/^http/, 'ws') + '/connection/websocket', {
      websocket: SpyingWebSocket,
      timeout: 5000,
      minReconnectDelay: 100,
      maxReconnectDelay: 500,
    });
    s.on('error', (ctx) => emit('error', { who: 's', type: ctx.type, error: ctx.error }));
    const sub = s.newSubscription(args.channel, { getState, minResubscribeDelay: 50, maxResubscribeDelay: 300 });
    const received = [];
    let subscribedCount = 0;
    sub.on('subscribed', (ctx) => {
      subscribedCount += 1;
      const position = ctx.streamPosition;
      emit('subscribed', {
        who: 's', recoverable: ctx.recoverable, wasRecovering: ctx.wasRecovering, recovered: ctx.recovered,
        streamPosition: position ? { offset: Number(position.offset || 0), epoch: position.epoch } : null,
      });
    });
    sub.on('error', (ctx) => emit('sub_error', { who: 's', type: ctx.type, error: ctx.error }));
    sub.on('publication', (ctx) => {
      const data = decode(ctx.data);
      received.push(data.n);
      emit('publication', { who: 's', data, offset: Number(ctx.offset || 0) });
    });
    const receivedAll = (what) =>
      until(() => database.every((n) => loaded.has(n) || received.includes(n)), 10000, what);

    sub.subscribe();
    s.connect();
    await until(() => subscribedCount === 1, 10000, 'first subscription');
    const before = Number(args.before);
    for (let i = 0; i < before; i++) await publish(database.length + 1);
    await receivedAll('the first publications');

    const gone = new Promise((resolve) => s.once('disconnected', resolve));
    s.disconnect();
    await gone;
    const missed = Number(args.missed);
    for (let i = 0; i < missed; i++) await publish(database.length + 1);
    if (args.lose === 'remove') await api('history_remove', { channel: args.channel });
    if (args.lose === 'expire') await sleep(Number(args.wait) * 1000);
    emit('checkpoint', { name: 'lost', database: [...database] });

    s.connect();
    await until(() => subscribedCount === 2, 10000, 'the subscription after getState');
    await publish(database.length + 1);
    await receivedAll('every publication');
    await sleep(200); // a duplicate or a late publication would show up now
    emit('summary', { who: 's', database, loaded: [...loaded].sort((a, b) => a - b), received });
    s.disconnect();
  },
};

await runScenario(scenarios, 'getstate');
