// Shared poll subscriptions through the official SDK (tests/test_sdk_sharedpoll.py): clients track keys of a
// channel whose state the server polls from a backend (a small HTTP server of the Python test, which this script
// changes with POST /set {channel, key, data, version}).
//
//   node sharedpoll.mjs --url URL[,URL2] --backend URL --protocol json|protobuf --channel CH --secret S --scenario NAME
//                       [--delta] [--pad N]   (delta: 'fossil' on the subscription; N more bytes in every value)
//
// Scenarios:
//   main     clients "a" (first URL) and "b" (last URL) track k1, k2; k1 changes; "a" untracks k2, k2 changes;
//            "a" reconnects while k1 changes again; "a" tracks "bad", which getSignature signs wrongly (103).
//   expiry   "a" tracks with a signature already expired past the grace period (109, then a fresh one), then
//            with signatures that expire in 2 s: the SDK asks for a new one when the reply's ttl runs out.
//   publish  "a" (first URL) and "b" (last URL) track k1; the server API's shared_poll_publish (--apikey) pushes
//            version 5 through the first URL, then an older 4, then 6 through the last URL; the backend then says
//            3 (older: no change), then 7.
//
// Events: "update" {who, key, data, version, removed}, "tracked" {who, keys}, "signature" {who, keys, expired},
// "sub_error" {who, type, code}, "wire" {who, dir, ...} (JSON only: track/untrack commands out, their replies
// and publications in), "step" {name}; then "done" (see harness.mjs).

import crypto from 'node:crypto';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { callAPI, emit, fail, guard, loadCentrifuge, runScenario, sleep } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    backend: { type: 'string' },
    protocol: { type: 'string', default: 'json' },
    channel: { type: 'string' },
    secret: { type: 'string' },
    scenario: { type: 'string', default: 'main' },
    deadline: { type: 'string', default: '40' },
    apikey: { type: 'string', default: '' },
    delta: { type: 'boolean', default: false },
    pad: { type: 'string', default: '0' },
  },
});
if (!args.url || !args.backend || !args.channel || !args.secret || !['json', 'protobuf'].includes(args.protocol)) {
  process.stderr.write('usage: node sharedpoll.mjs --url URL --backend URL --channel CH --secret S ...\n');
  process.exit(64);
}
guard(args.deadline);
const protobuf = args.protocol === 'protobuf';
const Centrifuge = await loadCentrifuge(protobuf);
const urls = args.url.split(',');
const utf8 = new TextDecoder('utf-8', { fatal: true });
const decode = (data) => (data instanceof Uint8Array ? JSON.parse(utf8.decode(data)) : data);

// The application's signature, as Centrifugo checks it (user "" for these anonymous clients).
function sign(keys, expiry, secret = args.secret) {
  const iat = Math.floor(Date.now() / 1000);
  const keysHash = crypto.createHash('sha256').update(keys.join('\x00')).digest('hex');
  const payload = [String(iat), String(expiry), '', args.channel, keysHash].join('\x00');
  const mac = crypto.createHmac('sha256', secret).update(payload).digest('hex');
  return `${iat}:${expiry}:${mac}`;
}

async function set(key, data, version) {
  // --pad N: a long field that changes little, so that delta compression has something to save.
  const padded = Number(args.pad) > 0 ? { ...data, pad: 'p'.repeat(Number(args.pad)) } : data;
  const response = await fetch(`${args.backend}/set`, {
    method: 'POST', body: JSON.stringify({ channel: args.channel, key, data: padded, version }),
  });
  if (!response.ok) fail(`backend /set answered ${response.status}`);
}

// JSON frames only: the shared poll commands a client sends, and what comes back for them.
function spy(who) {
  return class extends WebSocket {
    constructor(...rest) {
      super(...rest);
      this.addEventListener('message', (event) => {
        if (protobuf) return;
        for (const line of String(event.data).split('\n').filter(Boolean)) {
          const message = JSON.parse(line);
          if (message.sub_refresh) emit('wire', { who, dir: 'in', kind: 'sub_refresh', id: message.id, ...message.sub_refresh });
          if (message.error) emit('wire', { who, dir: 'in', kind: 'error', id: message.id, code: message.error.code });
          const pub = message.push?.pub;
          if (pub) emit('wire', { who, dir: 'in', kind: 'pub', key: pub.key, version: pub.version, removed: pub.removed, delta: pub.delta });
          if (message.subscribe) emit('wire', { who, dir: 'in', kind: 'subscribe', ...message.subscribe });
        }
      });
    }

    send(data, ...rest) {
      if (!protobuf) {
        for (const line of String(data).split('\n').filter(Boolean)) {
          const command = JSON.parse(line);
          if (command.sub_refresh) emit('wire', { who, dir: 'out', kind: 'sub_refresh', id: command.id, ...command.sub_refresh });
        }
      }
      return super.send(data, ...rest);
    }
  };
}

const updates = [];

function until(check, what, ms = 15000) {
  return new Promise((resolve) => {
    const deadline = Date.now() + ms;
    const poll = () => {
      if (check()) resolve();
      else if (Date.now() > deadline) fail(`timed out waiting for ${what}`);
      else setTimeout(poll, 20);
    };
    poll();
  });
}

const got = (who, key, version) => updates.some((u) => u.who === who && u.key === key && u.version === version);

async function client(who, url, getSignature) {
  const ws = url.replace(/^http/, 'ws') + '/connection/websocket';
  const centrifuge = new Centrifuge(ws, { websocket: spy(who) });
  const sub = centrifuge.newSharedPollSubscription(args.channel, args.delta ? { getSignature, delta: 'fossil' } : { getSignature });
  sub.on('update', (ctx) => {
    const update = { who, key: ctx.key, data: ctx.removed ? null : decode(ctx.data), version: ctx.version, removed: Boolean(ctx.removed) };
    updates.push(update);
    emit('update', update);
  });
  sub.on('error', (ctx) => emit('sub_error', { who, type: ctx.type, code: ctx.error?.code }));
  const subscribed = new Promise((resolve) => sub.once('subscribed', resolve));
  centrifuge.connect();
  sub.subscribe();
  await subscribed;
  return { centrifuge, sub };
}

function signer(who, expiresIn = 60, bad = []) {
  return async ({ keys }) => {
    emit('signature', { who, keys });
    const expiry = Math.floor(Date.now() / 1000) + expiresIn;
    const secret = keys.some((key) => bad.includes(key)) ? 'not-the-secret' : args.secret;
    return { keys, signature: sign(keys, expiry, secret) };
  };
}

const version = (n) => (args.channel.startsWith('pollvl') ? undefined : n);

await runScenario({
  async main() {
    const versioned = !args.channel.startsWith('pollvl');
    await set('k1', { v: 'k1-1' }, versioned ? 1 : 0);
    await set('k2', { v: 'k2-1' }, versioned ? 1 : 0);
    const a = await client('a', urls[0], signer('a', 60, ['bad']));
    const b = await client('b', urls[urls.length - 1], signer('b'));
    a.sub.track(['k1', 'k2']);
    b.sub.track(['k1', 'k2']);
    const seen = (who, key, v) => updates.some((u) => u.who === who && u.key === key && u.data?.v === v);
    await until(() => ['a', 'b'].every((who) => seen(who, 'k1', 'k1-1') && seen(who, 'k2', 'k2-1')), 'first state');
    emit('step', { name: 'first' });

    await set('k1', { v: 'k1-2' }, versioned ? 2 : 0);
    await until(() => seen('a', 'k1', 'k1-2') && seen('b', 'k1', 'k1-2'), 'k1 change');
    emit('step', { name: 'changed' });

    a.sub.untrack(['k2']);
    await sleep(200); // the untrack reaches the server before the change
    await set('k2', { v: 'k2-2' }, versioned ? 2 : 0);
    await until(() => seen('b', 'k2', 'k2-2'), 'k2 change for b');
    emit('tracked', { who: 'a', keys: [...a.sub.trackedKeys()].sort() });
    emit('step', { name: 'untracked' });

    const disconnected = new Promise((resolve) => a.centrifuge.once('disconnected', resolve));
    a.centrifuge.disconnect();
    await disconnected;
    await set('k1', { v: 'k1-3' }, versioned ? 3 : 0);
    await until(() => seen('b', 'k1', 'k1-3'), 'k1 change for b');
    const resubscribed = new Promise((resolve) => a.sub.once('subscribed', resolve));
    a.centrifuge.connect();
    await resubscribed;
    await until(() => seen('a', 'k1', 'k1-3'), 'k1 after reconnect');
    emit('step', { name: 'reconnected' });

    a.sub.track(['bad']);
    await until(() => updates.some((u) => u.who === 'a' && u.key === 'bad' && u.removed), 'bad key removed');
    emit('tracked', { who: 'a', keys: [...a.sub.trackedKeys()].sort() });
    emit('step', { name: 'refused' });
    a.centrifuge.disconnect();
    b.centrifuge.disconnect();
  },

  async publish() {
    await set('k1', { v: 'k1-1' }, 1);
    const a = await client('a', urls[0], signer('a'));
    const b = await client('b', urls[urls.length - 1], signer('b'));
    a.sub.track(['k1']);
    b.sub.track(['k1']);
    const seen = (who, v) => updates.some((u) => u.who === who && u.key === 'k1' && u.data?.v === v);
    const both = (v) => until(() => seen('a', v) && seen('b', v), `k1 ${v} for both`);
    await both('k1-1');
    const publish = (url, v, version) => callAPI(url, args.apikey, 'shared_poll_publish',
      { channel: args.channel, key: 'k1', data: { v }, version });
    await publish(urls[0], 'k1-pub5', 5);
    await both('k1-pub5');
    await publish(urls[0], 'k1-pub4', 4); // older: nobody gets it
    await publish(urls[urls.length - 1], 'k1-pub6', 6);
    await both('k1-pub6');
    await set('k1', { v: 'k1-3' }, 3); // the backend behind the published versions: no change
    await sleep(600); // three refresh intervals
    await set('k1', { v: 'k1-7' }, 7);
    await both('k1-7');
    a.centrifuge.disconnect();
    b.centrifuge.disconnect();
  },

  async expiry() {
    await set('k1', { v: 'k1-1' }, version(1) ?? 0);
    let calls = 0;
    const a = await client('a', urls[0], async ({ keys }) => {
      calls += 1;
      // The first signature expired 10 s ago (past the 5 s grace: 109); later ones expire in 2 s.
      const expiry = Math.floor(Date.now() / 1000) + (calls === 1 ? -10 : 2);
      emit('signature', { who: 'a', keys, expired: calls === 1 });
      return { keys, signature: sign(keys, expiry) };
    });
    a.sub.track(['k1']);
    await until(() => got('a', 'k1', version(1) ?? updates.find((u) => u.key === 'k1')?.version), 'k1 state');
    await until(() => calls >= 3, 'a signature refresh after the ttl');
    await set('k1', { v: 'k1-2' }, version(2) ?? 0);
    await until(() => updates.some((u) => u.key === 'k1' && u.data?.v === 'k1-2'), 'k1 change after refresh');
    emit('tracked', { who: 'a', keys: [...a.sub.trackedKeys()].sort() });
    a.centrifuge.disconnect();
  },
}, args.scenario);
