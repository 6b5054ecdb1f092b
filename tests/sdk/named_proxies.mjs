// Named proxies and RPC namespaces through the official SDK (tests/test_sdk_named_proxies.py): one anonymous
// WebSocket client subscribes to a channel whose namespace names a subscribe proxy, to one of a namespace without
// a proxy, and calls RPC methods of two RPC namespaces, a method of an unknown one and one without a namespace.
//
//   node named_proxies.mjs --url http://127.0.0.1:PORT --protocol json|protobuf
//
// Events: "subscribed" {channel, data}, "subscribe_error" {channel, code}, "rpc" {method, data} or
// {method, error: {code, message}}; then "done" (see harness.mjs).

import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { emit, fail, guard, loadCentrifuge, runScenario } from './harness.mjs';

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    protocol: { type: 'string', default: 'json' },
    deadline: { type: 'string', default: '20' },
  },
});
if (!args.url || !['json', 'protobuf'].includes(args.protocol)) {
  process.stderr.write('usage: node named_proxies.mjs --url URL --protocol json|protobuf\n');
  process.exit(64);
}
guard(args.deadline);
const protobuf = args.protocol === 'protobuf';
const Centrifuge = await loadCentrifuge(protobuf);
const encode = (value) => (protobuf ? new TextEncoder().encode(JSON.stringify(value)) : value);
// The Protobuf build gives bytes (empty for no data), the JSON one the value.
const decode = (data) => {
  if (!protobuf) {
    return data;
  }
  return data && data.length ? JSON.parse(new TextDecoder().decode(data)) : null;
};

function subscribe(client, channel) {
  return new Promise((resolve) => {
    const sub = client.newSubscription(channel);
    sub.on('subscribed', (ctx) => {
      emit('subscribed', { channel, data: ctx.data === undefined ? null : decode(ctx.data) });
      resolve();
    });
    sub.on('error', (ctx) => {
      emit('subscribe_error', { channel, code: ctx.error.code });
      sub.removeAllListeners();
      sub.unsubscribe();
      resolve();
    });
    sub.subscribe();
  });
}

await runScenario({
  async main() {
    const url = args.url.replace(/^http/, 'ws') + '/connection/websocket';
    const client = new Centrifuge(url, { websocket: WebSocket });
    client.on('error', (ctx) => emit('client_error', { error: ctx.error }));
    const connected = new Promise((resolve) => client.once('connected', resolve));
    client.connect();
    await connected;
    await subscribe(client, 'chat:room');
    await subscribe(client, 'open:room');
    for (const method of ['billing:pay', 'chat:hello', 'billing:refund', 'nope:x', 'plain']) {
      try {
        const result = await client.rpc(method, encode({ method }));
        emit('rpc', { method, data: decode(result.data) });
      } catch (error) {
        emit('rpc', { method, error: { code: error.code, message: error.message } });
      }
    }
    client.disconnect();
  },
}, 'main');
