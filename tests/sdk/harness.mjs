// What every Node script in this folder shares (http_stream.mjs, transports.mjs, protocol.mjs, cluster.mjs,
// redis_restart.mjs, api_subscriber.mjs, faults.mjs): they drive the official centrifuge JS SDK for the Python tests
// (tests/test_sdk_*.py, test_cluster.py, test_redis_restart.py, test_cent.py, ...), which read their stdout.
//
// The contract with those tests: one JSON object per line on stdout, each with "event" first; a script ends with
//   {"event":"done"}                    exit 0: the scenario's own checks passed (or the script was told to stop)
//   {"event":"fail","message":"..."}    exit 1: a check failed, or something threw or rejected unexpectedly
//   {"event":"timeout"}                 exit 2: the --deadline passed first
// (exit 64, with a usage line on stderr, is each script's own: its arguments were wrong).
//
// Nothing here runs on import but making stdout block (below): a script calls guard() once its arguments are
// checked, so a usage error still exits 64 without a word on stdout.

// Node writes to a pipe asynchronously once the pipe is full (the test reading it lags), and process.exit then
// drops what was still queued: a script's last events (its summary, "done") would be lost or cut mid-line. A
// blocking pipe makes every write complete before the next statement, as the tests need.
process.stdout._handle?.setBlocking?.(true);

// Fields every event of the script carries, between "event" and the event's own fields (see stampEvents).
let stamp = () => ({});

// Have every event carry `fields()`: e.g. {who} for a script that is one named client, {t} for a script whose
// tests look at timing. Called once per event, so a field may change (a clock).
export function stampEvents(fields) {
  stamp = fields;
}

// One event: one JSON object on its own line on stdout.
export function emit(event, fields = {}) {
  // stdout blocks (see above): nothing is lost when process.exit follows.
  process.stdout.write(JSON.stringify({ event, ...stamp(), ...fields }) + '\n');
}

// End the script: "done" with exit code 0, "timeout" with 2, "fail" with any other (1).
export function finish(code, fields = {}) {
  emit(code === 0 ? 'done' : code === 2 ? 'timeout' : 'fail', fields);
  process.exit(code);
}

// End the script as failed: {"event":"fail","message":...}, exit code 1.
export function fail(message) {
  finish(1, { message });
}

// Anything thrown or rejected, as text for a message: an Error's stack, else JSON (the SDK rejects with plain
// objects such as {code, message}), else String().
export function describe(value) {
  if (value instanceof Error) {
    return value.stack || String(value);
  }
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

// Fail (exit 1) on an unhandled rejection or uncaught exception instead of Node's own crash (which would print to
// stderr only and exit with a code the tests do not expect), and time out (exit 2) after `deadline` seconds.
//
// The deadline timer is unref'd by default: it must not by itself keep alive a script that has nothing left to do.
// keepAlive: true leaves it ref'd, for a script that waits on the SDK alone (see api_subscriber.mjs).
export function guard(deadline, { keepAlive = false } = {}) {
  process.on('unhandledRejection', (reason) => fail(`unhandled rejection: ${describe(reason)}`));
  process.on('uncaughtException', (error) => fail(`uncaught exception: ${describe(error)}`));
  const timer = setTimeout(() => finish(2), Number(deadline) * 1000);
  if (!keepAlive) {
    timer.unref();
  }
}

// Report a Centrifuge client's connection lifecycle as events of `who`: state changes, connecting (with the code
// and reason that caused it), connected (client id, transport), disconnected, and errors.
export function reportConnection(client, who) {
  client.on('state', (ctx) => emit('state', { who, from: ctx.oldState, to: ctx.newState }));
  client.on('connecting', (ctx) => emit('connecting', { who, code: ctx.code, reason: ctx.reason }));
  client.on('connected', (ctx) => emit('connected', { who, client: ctx.client, transport: ctx.transport }));
  client.on('disconnected', (ctx) => emit('disconnected', { who, code: ctx.code, reason: ctx.reason }));
  client.on('error', (ctx) => emit('error', { who, type: ctx.type, error: ctx.error, transport: ctx.transport }));
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Bytes (a Uint8Array or Buffer, or a view into a larger buffer) as lowercase hex, and back.
export function hex(bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function fromHex(text) {
  return new Uint8Array(Buffer.from(text, 'hex'));
}

// The --data argument as the application publishes it: hex bytes (a Uint8Array) for the Protobuf build, JSON text
// (the parsed value) for the JSON one.
export function parsePayload(text, protobuf) {
  return protobuf ? fromHex(text) : JSON.parse(text);
}

// The SDK's Centrifuge class from the build for the protocol: the Protobuf build or the JSON one (the default
// export). Imported only when asked for, so a script can check its arguments first.
export async function loadCentrifuge(protobuf) {
  const { Centrifuge } = protobuf ? await import('centrifuge/build/protobuf') : await import('centrifuge');
  return Centrifuge;
}

// Run scenarios[name] to its end: an unknown name or anything it throws fails the script (exit 1); a scenario
// that returns has passed its own checks (done, exit 0). A check inside a scenario fails it by calling fail().
export async function runScenario(scenarios, name) {
  const scenario = scenarios[name];
  if (!scenario) {
    fail(`unknown scenario ${name}`);
  }
  try {
    await scenario();
  } catch (error) {
    fail(describe(error));
  }
  finish(0);
}

// A server API call (`POST <url>/api/<method>` with the key); its result, or the scenario fails.
export async function callAPI(url, key, method, body) {
  const response = await fetch(`${url}/api/${method}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'X-API-Key': key },
    body: JSON.stringify(body),
  });
  const reply = await response.json();
  if (response.status !== 200 || reply.error) fail(`api ${method}: ${response.status} ${JSON.stringify(reply)}`);
  return reply.result || {};
}
