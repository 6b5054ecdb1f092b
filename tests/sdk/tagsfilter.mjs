// Drives the official centrifuge JS SDK's publication tags filters (`tagsFilter` subscription option and
// `setTagsFilter`, SDK 5.8) against running httpstream servers over WebSocket, for tests/test_sdk_tagsfilter.py.
//
//   node tagsfilter.mjs --url http://127.0.0.1:PORT [--apiurl http://127.0.0.1:PORT2] --protocol json|protobuf
//                       --apikey KEY --channel NAME --unfiltered NAME [--deadline SECONDS]
//
// The client connects to --url; the publications are made through the server API of --apiurl (another node of
// the cluster; default --url), each with tags, by `publish` and by `broadcast`. --channel is in a namespace with
// allow_tags_filter, --unfiltered in one without.
//
//   1. "eng" subscribes to --channel with the filter team == "eng"; 8 publications (n = 1..8) of teams
//      eng, sales, none, eng, ops, eng (broadcast), sales, eng: it must receive n = 1, 4, 6, 8, in order.
//   2. "eng" unsubscribes, setTagsFilter(team in [sales] and not prio >= 5), subscribes again; n = 9..13 of
//      sales, eng, sales (prio 7), sales (prio 2), eng, then 14 (sales, prio 1): it must receive n = 9, 12, 14.
//   3. "bad" subscribes to another channel of its namespace with a malformed filter (eq without val), and to
//      --unfiltered with a good one: both subscriptions end with an error (107), the connection stays up.
//
// Events (one JSON object per line, "event" first):
//   publication {sub, n, team, tags}       what a subscription received
//   subscribed {sub}  unsubscribed {sub, code, reason}  sub_error {sub, type, code}
//   disconnected {code, reason}            (must not happen)
//   summary {received: {sub: [n...]}}

import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { callAPI, emit, fail, guard, loadCentrifuge, runScenario, sleep } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    apiurl: { type: 'string', default: '' },
    protocol: { type: 'string', default: 'json' },
    apikey: { type: 'string', default: '' },
    channel: { type: 'string', default: 'tagged:x' },
    unfiltered: { type: 'string', default: 'plain:x' },
    deadline: { type: 'string', default: '30' },
  },
});

if (!args.url || !['json', 'protobuf'].includes(args.protocol)) {
  console.error('usage: node tagsfilter.mjs --url URL [--apiurl URL] --protocol json|protobuf --apikey KEY '
    + '--channel NAME --unfiltered NAME');
  process.exit(64);
}

const protobuf = args.protocol === 'protobuf';
const Centrifuge = await loadCentrifuge(protobuf);
guard(args.deadline);
const apiURL = args.apiurl || args.url;

const api = (method, body) => callAPI(apiURL, args.apikey, method, body);

async function publish(n, tags, method = 'publish') {
  const body = { data: { n }, tags };
  if (method === 'broadcast') {
    const result = await api('broadcast', { ...body, channels: [args.channel] });
    if (!result.responses || result.responses.some((r) => r.error)) fail(`broadcast: ${JSON.stringify(result)}`);
  } else {
    await api('publish', { ...body, channel: args.channel });
  }
}

const received = {};
const waiters = [];

function payload(data) {
  // The Protobuf build hands the raw JSON bytes the server API published.
  return protobuf ? JSON.parse(Buffer.from(data).toString('utf8')) : data;
}

function watch(sub, name) {
  received[name] = [];
  sub.on('subscribed', () => emit('subscribed', { sub: name }));
  sub.on('unsubscribed', (ctx) => emit('unsubscribed', { sub: name, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) => emit('sub_error', { sub: name, type: ctx.type, code: ctx.error && ctx.error.code }));
  sub.on('publication', (ctx) => {
    const { n } = payload(ctx.data);
    received[name].push(n);
    emit('publication', { sub: name, n, tags: ctx.tags || {} });
    for (const waiter of [...waiters]) waiter();
  });
}

function until(check, what) {
  return new Promise((resolve) => {
    const test = () => {
      if (check()) {
        waiters.splice(waiters.indexOf(test), 1);
        resolve();
      }
    };
    waiters.push(test);
    test();
  }).then(() => emit('checkpoint', { name: what }));
}

function event(sub, name) {
  return new Promise((resolve) => sub.once(name, resolve));
}

async function scenario() {
  const client = new Centrifuge(args.url.replace(/^http/, 'ws') + '/connection/websocket', { websocket: WebSocket });
  client.on('disconnected', (ctx) => emit('disconnected', { code: ctx.code, reason: ctx.reason }));
  client.connect();
  await client.ready(10000);

  // 1. A filter in the options.
  const eng = client.newSubscription(args.channel, { tagsFilter: { key: 'team', cmp: 'eq', val: 'eng' } });
  watch(eng, 'eng');
  eng.subscribe();
  await eng.ready(10000);
  const teams = ['eng', 'sales', '', 'eng', 'ops', 'eng', 'sales', 'eng'];
  for (const [index, team] of teams.entries()) {
    await publish(index + 1, team ? { team } : undefined, index === 5 ? 'broadcast' : 'publish');
  }
  await until(() => received.eng.includes(8), 'first');

  // 2. Another filter between unsubscribe and subscribe.
  eng.unsubscribe();
  eng.setTagsFilter({
    op: 'and',
    nodes: [
      { key: 'team', cmp: 'in', vals: ['sales'] },
      { op: 'not', nodes: [{ key: 'prio', cmp: 'gte', val: '5' }] },
    ],
  });
  const resubscribed = event(eng, 'subscribed');
  eng.subscribe();
  await resubscribed;
  const second = [{ team: 'sales' }, { team: 'eng' }, { team: 'sales', prio: '7' }, { team: 'sales', prio: '2' },
    { team: 'eng' }];
  for (const [index, tags] of second.entries()) {
    await publish(9 + index, tags);
  }
  await until(() => received.eng.includes(12), 'second');
  // What the filter excludes was published before 12 and would have arrived first: wait one more round trip
  // anyway with a matching sentinel, so a late excluded one would be seen.
  await publish(14, { team: 'sales', prio: '1' });
  await until(() => received.eng.includes(14), 'sentinel');

  // 3. Refused filters: the subscriptions end with 107, the connection stays.
  const bad = client.newSubscription(`${args.channel}-bad`, { tagsFilter: { key: 'team', cmp: 'eq' } });
  watch(bad, 'bad');
  const badDone = event(bad, 'unsubscribed');
  bad.subscribe();
  const notAllowed = client.newSubscription(args.unfiltered, { tagsFilter: { key: 'team', cmp: 'eq', val: 'eng' } });
  watch(notAllowed, 'not_allowed');
  const notAllowedDone = event(notAllowed, 'unsubscribed');
  notAllowed.subscribe();
  await Promise.all([badDone, notAllowedDone]);
  await sleep(200);
  if (client.state !== 'connected') fail(`client is ${client.state} after the refused subscribes`);
  emit('summary', { received });
  client.disconnect();
}

await runScenario({ scenario }, 'scenario');
