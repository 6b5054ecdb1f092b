// Drives the official centrifuge JS SDK (npm `centrifuge`, pinned in package.json) against TWO httpstream nodes of
// one Redis cluster ("A" and "B"), over transport http_stream only, with commands going up through /emulation.
//
//   node cluster.mjs --a http://127.0.0.1:PORT_A --b http://127.0.0.1:PORT_B --protocol json|protobuf
//                    --scenario NAME [--channel NAME] [--data DATA] [--go FILE] [--deadline SECONDS]
//
// Every client talks to one "balancer" address (http://balancer.invalid); its fetch sends each request to the node
// its route names at that moment: {stream: "A"|"B", emulation: "A"|"B"}. So a client's stream can be on one node
// while its emulation POSTs land on the other (as behind a load balancer without sticky sessions), and a scenario
// can move a client to the other node between two connections. Each request is reported:
//   {"event":"stream","who","node","status","contentType"}     the stream's response (node: "A" or "B")
//   {"event":"emulation","who","node","status"}                an emulation POST's answer
//
// Scenarios (tests/cluster/test_cluster.py asserts on their events):
//   own       "a" streams from A and sends its commands to B; subscribes to --channel, publishes --data, must
//             receive it.
//   crossnode "a" is all on A, "b" all on B; both subscribe to --channel; a publishes item 1, b item 2: each
//             client must receive both, in that order.
//   presence  "a" (A) subscribes to --channel, then "b" (B): a must see b's join; both ask the SDK's presence
//             (printed as "presence" with the sorted client ids); prints "ready" and waits for --go FILE to
//             exist (the test calls the server API meanwhile); then b unsubscribes and a must see b's leave.
//   watch     "a" (all on A) subscribes to --channel asking for join/leave, prints "ready", and prints what
//             comes (join, leave) until --go FILE exists.
//   recovery  "a" streams from A (commands to B), subscribes to --channel (a recoverable one); "p" (all on B)
//             publishes item 1, a receives it; a disconnects and is moved (stream on B, commands to A); p
//             publishes items 2, 3, 4; a connects again (the same Centrifuge object and subscription) and must
//             get 2, 3, 4 back; then "c", a new Centrifuge object all on A, subscribes with `since` the position
//             after item 1 and must get 2, 3, 4 too.
//
// Items: item n is {"n": n, "data": DATA} with --protocol json, the byte n followed by DATA's bytes with protobuf;
// each publication is printed with its "n" (the script checks the rest is DATA) and its offset.
//
// Data: --data is JSON text for --protocol json; hex bytes for --protocol protobuf.
//
// Exit code: 0 when the scenario's own checks passed, 1 when they failed ({"event":"fail",...}), 2 on timeout
// ({"event":"timeout"}).

import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  describe, emit, fail, guard, hex, loadCentrifuge, parsePayload, reportConnection, runScenario, sleep,
} from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    a: { type: 'string' },
    b: { type: 'string' },
    protocol: { type: 'string', default: 'json' },
    scenario: { type: 'string' },
    channel: { type: 'string', default: 'room:cluster' },
    data: { type: 'string', default: '{"text":"hello"}' },
    go: { type: 'string', default: '' },
    deadline: { type: 'string', default: '30' },
  },
});

if (!args.a || !args.b || !args.scenario || !['json', 'protobuf'].includes(args.protocol)) {
  console.error('usage: node cluster.mjs --a URL --b URL --protocol json|protobuf --scenario NAME [...]');
  process.exit(64);
}

const NODES = { A: args.a, B: args.b };
const BALANCER = 'http://balancer.invalid';

const protobuf = args.protocol === 'protobuf';
const Centrifuge = await loadCentrifuge(protobuf);

guard(args.deadline);

const payload = parsePayload(args.data, protobuf);

// Item n of a scenario, and back: the n of received data (failing the scenario if the rest is not DATA).
function item(n) {
  if (protobuf) {
    const bytes = new Uint8Array(payload.length + 1);
    bytes[0] = n;
    bytes.set(payload, 1);
    return bytes;
  }
  return { n, data: payload };
}

function itemNumber(who, data) {
  let n;
  let rest;
  if (protobuf) {
    if (!(data instanceof Uint8Array) || data.length !== payload.length + 1) {
      fail(`${who} received ${describe(data)}: not an item`);
    }
    n = data[0];
    rest = hex(data.subarray(1)) === hex(payload);
  } else {
    n = data?.n;
    rest = JSON.stringify(data?.data) === JSON.stringify(payload);
  }
  if (!rest) {
    fail(`${who} received ${protobuf ? hex(data) : JSON.stringify(data)}: not the data published`);
  }
  return n;
}

// The fetch of a client behind the balancer: each request goes to the node its route names when it is made.
function routingFetch(who, route) {
  return (url, options) => {
    const text = String(url);
    if (!text.startsWith(BALANCER)) {
      fail(`${who} fetched ${text}, not through the balancer`);
    }
    const emulation = text.endsWith('/emulation');
    const node = emulation ? route.emulation : route.stream;
    return globalThis.fetch(NODES[node] + text.slice(BALANCER.length), options).then(
      (response) => {
        if (emulation) {
          emit('emulation', { who, node, status: response.status });
        } else {
          emit('stream', { who, node, status: response.status, contentType: response.headers.get('content-type') });
        }
        return response;
      },
      (error) => {
        if (!(error && error.name === 'AbortError')) {
          emit('fetch_error', { who, node, emulation, message: String(error && error.message) });
        }
        throw error;
      },
    );
  };
}

function newClient(who, route, options = {}) {
  const client = new Centrifuge([{ transport: 'http_stream', endpoint: BALANCER + '/connection/http_stream' }], {
    emulationEndpoint: BALANCER + '/emulation',
    fetch: routingFetch(who, route),
    timeout: 5000,
    minReconnectDelay: 200,
    maxReconnectDelay: 1000,
    ...options,
  });
  reportConnection(client, who);
  return client;
}

function subscribe(client, who, channel, options = {}) {
  const sub = client.newSubscription(channel, options);
  sub.on('subscribing', (ctx) => emit('subscribing', { who, channel, code: ctx.code, reason: ctx.reason }));
  sub.on('subscribed', (ctx) =>
    emit('subscribed', {
      who,
      channel,
      wasRecovering: ctx.wasRecovering,
      recovered: ctx.recovered,
      recoverable: ctx.recoverable,
      streamPosition: ctx.streamPosition ?? null,
    }),
  );
  sub.on('unsubscribed', (ctx) => emit('unsubscribed', { who, channel, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => emit('sub_error', { who, channel, type: ctx.type, error: ctx.error }));
  sub.on('join', (ctx) => emit('join', { who, channel, client: ctx.info.client, user: ctx.info.user }));
  sub.on('leave', (ctx) => emit('leave', { who, channel, client: ctx.info.client, user: ctx.info.user }));
  sub.on('publication', (ctx) =>
    emit('publication', {
      who,
      channel: ctx.channel,
      n: itemNumber(who, ctx.data),
      offset: ctx.offset ?? null,
      info: ctx.info ? { client: ctx.info.client, user: ctx.info.user } : null,
    }),
  );
  sub.subscribe();
  return sub;
}

// Resolves with the publications of sub once `count` of them have come (those from now on).
function publications(sub, count) {
  const got = [];
  return new Promise((resolve) => {
    const listener = (ctx) => {
      got.push(ctx);
      if (got.length === count) {
        sub.removeListener('publication', listener);
        resolve(got);
      }
    };
    sub.on('publication', listener);
  });
}

function numbers(who, contexts) {
  return contexts.map((ctx) => itemNumber(who, ctx.data));
}

function expectNumbers(who, contexts, expected) {
  const got = numbers(who, contexts);
  if (JSON.stringify(got) !== JSON.stringify(expected)) {
    fail(`${who} received items ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`);
  }
}

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, resolve));
}

async function waitForFile(path) {
  while (!existsSync(path)) {
    await sleep(50);
  }
}

const scenarios = {
  async own() {
    const a = newClient('a', { stream: 'A', emulation: 'B' });
    a.connect();
    const sub = subscribe(a, 'a', args.channel);
    await sub.ready();
    const received = publications(sub, 1);
    await a.publish(args.channel, item(1));
    emit('published', { who: 'a', n: 1 });
    expectNumbers('a', await received, [1]);
    a.disconnect();
  },

  async crossnode() {
    const a = newClient('a', { stream: 'A', emulation: 'A' });
    const b = newClient('b', { stream: 'B', emulation: 'B' });
    a.connect();
    b.connect();
    const subA = subscribe(a, 'a', args.channel);
    const subB = subscribe(b, 'b', args.channel);
    await Promise.all([subA.ready(), subB.ready()]);
    const atA = publications(subA, 2);
    const atB = publications(subB, 2);
    // b publishes once a's publication has reached it, so both clients must see 1 before 2.
    const firstAtB = once(subB, 'publication');
    await a.publish(args.channel, item(1));
    emit('published', { who: 'a', n: 1 });
    await firstAtB;
    await b.publish(args.channel, item(2));
    emit('published', { who: 'b', n: 2 });
    expectNumbers('a', await atA, [1, 2]);
    expectNumbers('b', await atB, [1, 2]);
    a.disconnect();
    b.disconnect();
  },

  async presence() {
    const a = newClient('a', { stream: 'A', emulation: 'A' });
    const b = newClient('b', { stream: 'B', emulation: 'B' });
    a.connect();
    // The channel has join_leave; a client asks for the messages (force_push_join_leave is off).
    const subA = subscribe(a, 'a', args.channel, { joinLeave: true });
    await subA.ready();
    const connected = once(b, 'connected');
    b.connect();
    const bID = (await connected).client;
    const joined = new Promise((resolve) => {
      subA.on('join', (ctx) => ctx.info.client === bID && resolve(ctx));
    });
    const subB = subscribe(b, 'b', args.channel);
    await Promise.all([subB.ready(), joined]);
    for (const [who, sub] of [['a', subA], ['b', subB]]) {
      const result = await sub.presence();
      emit('presence', { who, clients: Object.keys(result.clients).sort() });
    }
    emit('ready');
    await waitForFile(args.go);
    const left = new Promise((resolve) => {
      subA.on('leave', (ctx) => ctx.info.client === bID && resolve(ctx));
    });
    subB.unsubscribe();
    await left;
    a.disconnect();
    b.disconnect();
  },

  async watch() {
    const a = newClient('a', { stream: 'A', emulation: 'A' });
    a.connect();
    const sub = subscribe(a, 'a', args.channel, { joinLeave: true });
    await sub.ready();
    emit('ready');
    await waitForFile(args.go);
    a.disconnect();
  },

  async recovery() {
    const route = { stream: 'A', emulation: 'B' };
    const a = newClient('a', route);
    const p = newClient('p', { stream: 'B', emulation: 'B' });
    a.connect();
    p.connect();
    const sub = subscribe(a, 'a', args.channel);
    const subscribed = once(sub, 'subscribed');
    await Promise.all([sub.ready(), p.ready()]);
    const { epoch } = (await subscribed).streamPosition ?? {};
    if (!epoch) {
      fail('the first subscribe gave no stream position: the channel is not recoverable');
    }

    let received = publications(sub, 1);
    await p.publish(args.channel, item(1));
    const [first] = await received;
    expectNumbers('a', [first], [1]);
    const since = { offset: first.offset, epoch };

    // Away: a's subscription keeps its position; meanwhile p publishes three more.
    const gone = once(a, 'disconnected');
    a.disconnect();
    await gone;
    route.stream = 'B';
    route.emulation = 'A';
    emit('moved', { who: 'a', route: { ...route } });
    for (const n of [2, 3, 4]) {
      await p.publish(args.channel, item(n));
      emit('published', { who: 'p', n });
    }

    received = publications(sub, 3);
    const resubscribed = once(sub, 'subscribed');
    a.connect();
    await resubscribed;
    expectNumbers('a', await received, [2, 3, 4]);

    // A new Centrifuge object, told where the app left off.
    emit('since', { who: 'c', ...since });
    const c = newClient('c', { stream: 'A', emulation: 'A' });
    c.connect();
    const subC = subscribe(c, 'c', args.channel, { since });
    expectNumbers('c', await publications(subC, 3), [2, 3, 4]);
    a.disconnect();
    p.disconnect();
    c.disconnect();
  },
};

await runScenario(scenarios, args.scenario);
