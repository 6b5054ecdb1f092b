// Drives the official centrifuge JS SDK's map subscriptions (SDK >= 5.8: newMapSubscription,
// newMapClientsSubscription, mapPublish/mapRemove, sub.publish/sub.remove) against a running httpstream server over
// WebSocket, for tests/test_sdk_maps.py.
//
//   node maps.mjs --url http://127.0.0.1:PORT --protocol json|protobuf --apikey KEY --scenario NAME --channel NAME
//                 [--apiurl URL] [--writeurl URL] [--keys N] [--deadline SECONDS]
//
// The subscribers connect to --url; the server API calls go to --apiurl and the writing client (updates) and the
// presence member connect to --writeurl (both --url unless given: another node of the same Redis, for two nodes).
//
// Scenarios (each checks itself and fails the script when the SDK's view is not the map's):
//   snapshot  --keys N keys written through the server API, then a map subscription with pageSize 2: its sync
//             holds exactly those keys (the test reads how many subscribe frames it took)
//   during    the same, with the server API writing (sets and removals) while the SDK pages; after the sync, the
//             updates: the SDK's map must equal the model of every write, nothing lost or twice
//   updates   client.mapPublish, sub.publish, sub.remove, client.mapRemove, and the server API: each an update
//   recover   a positioned map: disconnect, two writes, connect: subscribed recovered, no second sync, 2 updates
//   scratch   a stream of 2: disconnect, five writes, connect: 112, then (from_scratch) a fresh sync of all keys
//   fatal     the same with unrecoverableStrategy 'fatal': the subscription ends unsubscribed with code 112
//   presence  a map clients subscription to prescli:<channel> sees a member of <channel> come and go
//   tags      tagged keys (the API's tags); a subscription with tagsFilter team=eng syncs and follows only the eng
//             keys (removals by the removed key's tags); after unsubscribe and setTagsFilter(team=sales), subscribe
//             syncs only the sales keys again (a full STATE resync, not a recovery)
//   restart   a positioned map synced, then "ready": the test restarts the Redis (empty); the node's position
//             check unsubscribes (2500), the SDK resubscribes (112: from scratch) and syncs the empty map; a write
//             after it arrives as an update
//
// Events (one JSON object per line, "event" first): wire {frames} (subscribe frames sent), sync {keys},
// subscribed {recovered, wasRecovering}, update {key, removed}, unsubscribed {code}, result {...}.

import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { callAPI, emit, fail, guard, loadCentrifuge, runScenario, sleep } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    apiurl: { type: 'string' },
    writeurl: { type: 'string' },
    protocol: { type: 'string', default: 'json' },
    apikey: { type: 'string', default: '' },
    scenario: { type: 'string', default: 'snapshot' },
    channel: { type: 'string', default: 'positioned:m' },
    keys: { type: 'string', default: '5' },
    deadline: { type: 'string', default: '30' },
  },
});

if (!args.url || !['json', 'protobuf'].includes(args.protocol)) {
  console.error('usage: node maps.mjs --url URL --protocol json|protobuf --apikey KEY --scenario NAME --channel NAME');
  process.exit(64);
}

const protobuf = args.protocol === 'protobuf';
const Centrifuge = await loadCentrifuge(protobuf);
guard(args.deadline);
const channel = args.channel;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Values as the SDK gives them back: JSON objects, or bytes for Protobuf (written as JSON text by the API).
const value = (n) => (protobuf ? encoder.encode(JSON.stringify({ n })) : { n });
const read = (data) => (data === undefined || data === null || data.length === 0 ? null
  : protobuf ? JSON.parse(decoder.decode(data)).n : data.n);

const api = (method, body) => callAPI(args.apiurl || args.url, args.apikey, method, body);

const model = new Map();

// Writes reach the server in the order of the model: one after the other (a write made while the SDK pages does
// not wait for the previous one to be answered, but goes after it).
let writing = Promise.resolve();

function write(key, n, tags = undefined) {
  if (n === null) model.delete(key);
  else model.set(key, n);
  writing = writing.then(() => (n === null ? api('map_remove', { channel, key })
    : api('map_publish', { channel, key, data: { n }, ...(tags ? { tags } : {}) })));
  return writing;
}

// Protobuf frames: varint-delimited Commands; a Command's subscribe is field 5.
function varint(bytes, at) {
  let result = 0;
  let shift = 0;
  for (;;) {
    if (at.i >= bytes.length) throw new Error('truncated varint');
    const byte = bytes[at.i++];
    result += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return result;
    shift += 7;
  }
}

function protoSubscribes(bytes) {
  let count = 0;
  const at = { i: 0 };
  while (at.i < bytes.length) {
    const length = varint(bytes, at);
    const end = at.i + length;
    while (at.i < end) {
      const key = varint(bytes, at);
      const type = key & 7;
      if (type === 0) varint(bytes, at);
      else if (type === 2) {
        if (Math.floor(key / 8) === 5) count++;
        const length = varint(bytes, at);
        at.i += length;
      } else at.i += type === 1 ? 8 : 4;
    }
  }
  return count;
}

// The WebSocket the SDK uses, counting the subscribe commands it sends (and calling onSubscribeFrame for each).
let subscribeFrames = 0;
let onSubscribeFrame = () => {};
class CountingWebSocket extends WebSocket {
  send(data, ...rest) {
    const count = protobuf
      ? protoSubscribes(new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength))
      : String(data).split('\n').filter((line) => line.includes('"subscribe"')).length;
    for (let i = 0; i < count; i++) {
      subscribeFrames++;
      onSubscribeFrame();
    }
    return super.send(data, ...rest);
  }
}

function newClient(url = args.url) {
  const endpoint = url.replace('http', 'ws') + '/connection/websocket';
  const client = new Centrifuge(endpoint, { websocket: CountingWebSocket, minReconnectDelay: 50, maxReconnectDelay: 100, debug: !!process.env.MAPS_DEBUG });
  client.on('error', (ctx) => emit('client_error', { error: ctx.error }));
  return client;
}

function once(target, event) {
  return new Promise((resolve) => target.once(event, resolve));
}

// A map as the SDK shows it: the last sync, then every update.
function follow(sub, who = 's') {
  const view = new Map();
  const updates = [];
  sub.on('sync', (ctx) => {
    view.clear();
    for (const entry of ctx.entries) view.set(entry.key, read(entry.data));
    emit('sync', { who, keys: [...view.keys()].sort() });
  });
  sub.on('update', (ctx) => {
    updates.push(ctx);
    if (ctx.removed) view.delete(ctx.key);
    else view.set(ctx.key, ctx.data === undefined ? null : read(ctx.data));
    emit('update', { who, key: ctx.key, removed: ctx.removed === true });
  });
  sub.on('subscribed', (ctx) => emit('subscribed', { who, recovered: ctx.recovered, wasRecovering: ctx.wasRecovering }));
  sub.on('unsubscribed', (ctx) => emit('unsubscribed', { who, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => emit('sub_error', { who, error: ctx.error }));
  return { view, updates };
}

async function until(check, what) {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await sleep(25);
  }
  fail(`timed out waiting for ${what}`);
}

function sameAsModel(view) {
  const expected = JSON.stringify([...model.entries()].sort());
  const got = JSON.stringify([...view.entries()].sort());
  if (expected !== got) fail(`the SDK's map ${got} is not the map ${expected}`);
}

async function seed(count) {
  for (let i = 0; i < count; i++) await write(`k${String(i).padStart(3, '0')}`, i);
}

const scenarios = {
  async snapshot() {
    await seed(Number(args.keys));
    const client = newClient();
    client.connect();
    const sub = client.newMapSubscription(channel, { pageSize: 2 });
    const { view } = follow(sub);
    const synced = once(sub, 'sync');
    sub.subscribe();
    await synced;
    emit('wire', { frames: subscribeFrames });
    sameAsModel(view);
    client.disconnect();
  },

  async during() {
    await seed(Number(args.keys));
    let n = 1000;
    const writes = [];
    // Between the SDK's pages: a new key before every cursor, an update of a key not yet paged, a removal.
    onSubscribeFrame = () => {
      const i = n++;
      writes.push(write(`a${i}`, i));
      writes.push(write(`k${String(Number(args.keys) - 1).padStart(3, '0')}`, i));
      if (i % 2) writes.push(write(`k${String(i % Number(args.keys)).padStart(3, '0')}`, null));
    };
    const client = newClient();
    client.connect();
    const sub = client.newMapSubscription(channel, { pageSize: 2 });
    const { view } = follow(sub);
    const synced = once(sub, 'sync');
    sub.subscribe();
    await synced;
    onSubscribeFrame = () => {};
    emit('wire', { frames: subscribeFrames });
    await Promise.all(writes);
    await write('last', 1);
    await until(() => view.get('last') === 1, 'the last write');
    sameAsModel(view);
    emit('result', { keys: model.size });
    client.disconnect();
  },

  async updates() {
    const client = newClient();
    client.connect();
    const sub = client.newMapSubscription(channel);
    const { view, updates } = follow(sub);
    const synced = once(sub, 'sync');
    sub.subscribe();
    await synced;
    await client.mapPublish(channel, 'a', value(1));
    await sub.publish('b', value(2));
    await sub.remove('a');
    await api('map_publish', { channel, key: 'c', data: { n: 3 } });
    await client.mapRemove(channel, 'b');
    // A client of the writing node (this one unless --writeurl).
    const writer = newClient(args.writeurl || args.url);
    writer.connect();
    await writer.mapPublish(channel, 'd', value(4));
    await writer.mapRemove(channel, 'c');
    await until(() => updates.length === 7, 'seven updates');
    const seen = updates.map((u) => [u.key, u.removed === true]);
    const expected = [['a', false], ['b', false], ['a', true], ['c', false], ['b', true], ['d', false], ['c', true]];
    if (JSON.stringify(seen) !== JSON.stringify(expected)) fail(`updates ${JSON.stringify(seen)}`);
    if (JSON.stringify([...view.entries()]) !== JSON.stringify([['d', 4]])) fail(`map ${JSON.stringify([...view])}`);
    writer.disconnect();
    client.disconnect();
  },

  async recover() {
    await seed(3);
    const client = newClient();
    client.connect();
    const sub = client.newMapSubscription(channel, { pageSize: 2 });
    const { view } = follow(sub);
    let syncs = 0;
    sub.on('sync', () => syncs++);
    const subscribed = once(sub, 'subscribed');
    sub.subscribe();
    await subscribed;
    await until(() => syncs === 1, 'the first sync');
    client.disconnect();
    await write('x', 10);
    await write('k000', null);
    const again = once(sub, 'subscribed');
    client.connect();
    const ctx = await again;
    if (!ctx.recovered) fail('not recovered');
    await until(() => !view.has('k000') && view.get('x') === 10, 'the missed writes');
    if (syncs !== 1) fail(`${syncs} syncs`);
    sameAsModel(view);
    client.disconnect();
  },

  async scratch() {
    await unrecoverable('from_scratch');
  },

  async fatal() {
    await unrecoverable('fatal');
  },

  async presence() {
    const watcher = newClient();
    watcher.connect();
    const who = watcher.newMapClientsSubscription('prescli:' + channel);
    const { updates } = follow(who, 'w');
    const synced = once(who, 'sync');
    who.subscribe();
    await synced;
    const member = newClient(args.writeurl || args.url);
    const connected = once(member, 'connected');
    member.connect();
    const { client: memberID } = await connected;
    const sub = member.newMapSubscription(channel);
    follow(sub, 'm');
    sub.subscribe();
    await until(() => updates.length === 1, 'the join');
    sub.unsubscribe();
    await until(() => updates.length === 2, 'the leave');
    const seen = updates.map((u) => [u.key, u.removed === true]);
    if (JSON.stringify(seen) !== JSON.stringify([[memberID, false], [memberID, true]])) fail(JSON.stringify(seen));
    emit('result', { member: memberID });
    member.disconnect();
    watcher.disconnect();
  },

  async tags() {
    const teams = {};
    const tagged = (key, team, n) => {
      teams[key] = team;
      return write(key, n, { team });
    };
    for (let i = 0; i < 6; i++) await tagged(`k${i}`, i % 3 ? 'sales' : 'eng', i);
    const only = (team) => new Map([...model.entries()].filter(([key]) => teams[key] === team));
    const client = newClient();
    client.connect();
    const sub = client.newMapSubscription(channel, { pageSize: 2, tagsFilter: { key: 'team', cmp: 'eq', val: 'eng' } });
    const { view, updates } = follow(sub);
    let syncs = 0;
    sub.on('sync', () => syncs++);
    sub.subscribe();
    await until(() => syncs === 1, 'the eng sync');
    same(view, only('eng'), 'the eng sync');
    // Live: the eng writes and removals only (a removal carries the removed key's tags).
    await tagged('e9', 'eng', 9);
    await tagged('s9', 'sales', 9);
    await write('k1', null);
    await write('k0', null);
    await write('last', 1, { team: 'eng' });
    await until(() => view.get('last') === 1, 'the last eng write');
    teams.last = 'eng';
    same(view, only('eng'), 'the eng updates');
    const seen = updates.map((u) => [u.key, u.removed === true]);
    if (JSON.stringify(seen) !== JSON.stringify([['e9', false], ['k0', true], ['last', false]])) {
      fail(`eng updates ${JSON.stringify(seen)}`);
    }
    const unsubscribed = once(sub, 'unsubscribed');
    sub.unsubscribe();
    await unsubscribed;
    sub.setTagsFilter({ key: 'team', cmp: 'eq', val: 'sales' });
    const subscribed = once(sub, 'subscribed');
    sub.subscribe();
    const ctx = await subscribed;
    if (ctx.recovered) fail('a new filter recovered instead of syncing');
    await until(() => syncs === 2, 'the sales sync');
    same(view, only('sales'), 'the sales sync');
    emit('result', { eng: 3, sales: only('sales').size });
    client.disconnect();
  },

  async restart() {
    await seed(3);
    const client = newClient();
    client.connect();
    const sub = client.newMapSubscription(channel, { pageSize: 2 });
    const { view, updates } = follow(sub);
    let syncs = 0;
    sub.on('sync', () => syncs++);
    sub.subscribe();
    await until(() => syncs === 1, 'the first sync');
    sameAsModel(view);
    emit('ready');
    // The test restarts Redis (empty): nothing is written, and yet the SDK must sync again.
    for (let i = 0; i < 1000 && syncs < 2; i++) await sleep(25);
    if (syncs < 2) fail('no second sync after the Redis restart');
    if (view.size !== 0) fail(`the map after the restart: ${JSON.stringify([...view])}`);
    model.clear();
    await write('after', 1);
    await until(() => view.get('after') === 1, 'a write after the restart');
    emit('result', { updates: updates.length });
    client.disconnect();
  },
};

function same(view, expected, what) {
  const got = JSON.stringify([...view.entries()].sort());
  const want = JSON.stringify([...expected.entries()].sort());
  if (got !== want) fail(`${what}: the SDK's map ${got} is not ${want}`);
}

async function unrecoverable(strategy) {
  await seed(3);
  const client = newClient();
  client.connect();
  const sub = client.newMapSubscription(channel, { unrecoverableStrategy: strategy });
  const { view } = follow(sub);
  let syncs = 0;
  sub.on('sync', () => syncs++);
  const subscribed = once(sub, 'subscribed');
  sub.subscribe();
  await subscribed;
  client.disconnect();
  for (let i = 0; i < 5; i++) await write(`n${i}`, i);
  if (strategy === 'fatal') {
    const unsubscribed = once(sub, 'unsubscribed');
    client.connect();
    const ctx = await unsubscribed;
    if (ctx.code !== 112) fail(`unsubscribed with ${ctx.code}`);
  } else {
    client.connect();
    await until(() => syncs === 2, 'a second sync');
    sameAsModel(view);
  }
  client.disconnect();
}

await runScenario(scenarios, args.scenario);
