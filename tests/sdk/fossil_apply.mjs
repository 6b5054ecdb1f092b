// Applies fossil deltas with the official centrifuge JS SDK's own decoder (npm `centrifuge`, pinned in
// package.json), for tests/protocol/test_delta.py.
//
//   node fossil_apply.mjs   < one JSON object per line > one JSON object per line, in order, each as soon as done
//
// Request:  {"source_b64": "...", "delta_b64": "...", "mode": "protobuf" | "json", "delta_json": "..."}
// Reply:    {"ok": true, "result_b64": "...", "data": ...}  or  {"ok": false, "error": "..."}
//
// The SDK does not export applyDelta (src/fossil.ts); it reaches it through its codecs' applyDeltaIfNeeded, called
// by Subscription._handlePublication for a publication with delta true. Each Centrifuge instance builds its codec
// in the constructor (it connects only on connect()), so one instance per build gives the exact decoding path:
//   mode "protobuf" (default): the Protobuf build's codec, pub.data = the delta bytes; result_b64 is the target.
//   mode "json": the JSON build's codec, pub.data = the delta as the JSON string the server sends. That string is
//     JSON.parse(delta_json) when given (the field exactly as on the wire), else delta_b64 decoded as UTF-8
//     (fatal: a delta that is not valid UTF-8 cannot travel as a JSON string and is reported as an error).
//     result_b64 is the target bytes (the SDK's next base); data is the parsed JSON value the app would get.
//     The target must be JSON text, as on a JSON connection.

import { createInterface } from 'node:readline';
import { Centrifuge as CentrifugeJson } from 'centrifuge';
import { Centrifuge as CentrifugeProtobuf } from 'centrifuge/build/protobuf';

const endpoint = 'ws://127.0.0.1:1/connection/websocket'; // Never connected to.
const codecs = {
  json: new CentrifugeJson(endpoint)._codec,
  protobuf: new CentrifugeProtobuf(endpoint)._codec,
};

function apply(request) {
  const mode = request.mode || 'protobuf';
  const codec = codecs[mode];
  if (!codec) {
    throw new Error(`unknown mode ${mode}`);
  }
  const source = new Uint8Array(Buffer.from(request.source_b64, 'base64'));
  let data;
  if (mode === 'json') {
    data = request.delta_json !== undefined
      ? JSON.parse(request.delta_json)
      : new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(request.delta_b64, 'base64'));
  } else {
    data = new Uint8Array(Buffer.from(request.delta_b64, 'base64'));
  }
  const { newData, newPrevValue, isDelta } = codec.applyDeltaIfNeeded({ delta: true, data }, source);
  if (!isDelta) {
    throw new Error('the codec did not take the publication as a delta');
  }
  const reply = { ok: true, result_b64: Buffer.from(newPrevValue).toString('base64') };
  if (mode === 'json') {
    reply.data = newData;
  }
  return reply;
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) {
    continue;
  }
  let reply;
  try {
    reply = apply(JSON.parse(line));
  } catch (error) {
    reply = { ok: false, error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(JSON.stringify(reply) + '\n');
}
