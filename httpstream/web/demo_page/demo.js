// The demo chat: one channel, the official centrifuge SDK (served by httpstream at /demo/centrifuge.js from the
// npm package in web/), any of its transports. Settings come from the query string:
//   transport  websocket | http_stream | sse | fallback (websocket, then http_stream)   default: fallback
//   protocol   json | protobuf (sse is JSON-only)                                        default: json
//   server     the httpstream base URL, e.g. http://127.0.0.1:8000                       default: this page's origin
//   channel    default: chat;  name: shown with each message (default: a random guest name)
// A page served from another origin must be allowed by the server's allowed_origins.
(function () {
  'use strict';

  const TRANSPORTS = ['fallback', 'http_stream', 'websocket', 'sse'];
  const params = new URLSearchParams(window.location.search);
  const settings = {
    transport: TRANSPORTS.includes(params.get('transport')) ? params.get('transport') : 'fallback',
    protocol: params.get('protocol') === 'protobuf' ? 'protobuf' : 'json',
    server: (params.get('server') || window.location.origin).replace(/\/+$/, ''),
    channel: params.get('channel') || 'chat',
    name: (params.get('name') || '').trim() || 'guest-' + Math.floor(1000 + Math.random() * 9000),
  };

  const $ = (id) => document.getElementById(id);
  const status = $('status');
  const list = $('messages');
  const text = $('text');
  const send = $('send');

  // The settings form shows what this page runs with.
  $('transport').value = settings.transport;
  $('protocol').value = settings.protocol;
  $('name').value = settings.name;
  $('server').value = params.get('server') || '';
  $('channel').value = settings.channel;
  function sseOnlyWithJSON() {
    const sse = $('transport').querySelector('option[value="sse"]');
    sse.disabled = $('protocol').value === 'protobuf';
    if (sse.disabled && $('transport').value === 'sse') {
      $('transport').value = 'http_stream';
    }
  }
  $('protocol').addEventListener('change', sseOnlyWithJSON);
  sseOnlyWithJSON();

  function setStatus(state, detail) {
    status.dataset.state = state;
    $('state').textContent = state;
    $('detail').textContent = detail || '';
  }

  function showError(message) {
    $('error').textContent = message || '';
  }

  function addItem(className, parts) {
    const item = document.createElement('li');
    item.className = className;
    for (const [cls, value] of parts) {
      const span = document.createElement('span');
      span.className = cls;
      span.textContent = value;
      item.appendChild(span);
    }
    const atBottom = list.parentElement.scrollTop + list.parentElement.clientHeight >= list.parentElement.scrollHeight - 4;
    list.appendChild(item);
    if (atBottom) {
      item.scrollIntoView({ block: 'end' });
    }
  }

  function system(message) {
    addItem('system', [['text', message]]);
  }

  // Protobuf carries bytes: the chat's JSON goes in as UTF-8.
  const encode = (value) => settings.protocol === 'protobuf' ? new TextEncoder().encode(JSON.stringify(value)) : value;
  function decode(data) {
    if (settings.protocol !== 'protobuf') {
      return data;
    }
    const textData = new TextDecoder().decode(data);
    try {
      return JSON.parse(textData);
    } catch (e) {
      return textData;
    }
  }

  function showPublication(ctx) {
    const data = decode(ctx.data);
    const time = new Date().toLocaleTimeString();
    if (data && typeof data === 'object' && typeof data.text === 'string') {
      addItem('message', [['time', time], ['user', String(data.user || (ctx.info && ctx.info.user) || 'anonymous')], ['text', data.text]]);
    } else {
      // Something published by other means (the server API, another app): show it as it came.
      addItem('message', [['time', time], ['user', 'data'], ['text', typeof data === 'string' ? data : JSON.stringify(data)]]);
    }
  }

  function endpoints() {
    const base = settings.server;
    const websocket = { transport: 'websocket', endpoint: base.replace(/^http/, 'ws') + '/connection/websocket' };
    const httpStream = { transport: 'http_stream', endpoint: base + '/connection/http_stream' };
    const sse = { transport: 'sse', endpoint: base + '/connection/sse' };
    return { fallback: [websocket, httpStream], http_stream: [httpStream], websocket: [websocket], sse: [sse] }[settings.transport];
  }

  function start() {
    if (typeof window.Centrifuge !== 'function') {
      setStatus('disconnected', 'the SDK did not load');
      return;
    }
    if (settings.transport === 'sse' && settings.protocol === 'protobuf') {
      setStatus('disconnected', 'SSE is JSON-only: pick JSON or another transport');
      return;
    }
    const centrifuge = new window.Centrifuge(endpoints(), {
      // Absolute, so a page served from another origin still sends its commands to the server.
      emulationEndpoint: settings.server + '/emulation',
      name: 'httpstream-demo',
    });
    const sub = centrifuge.newSubscription(settings.channel);
    window.demo = { centrifuge, sub, settings };

    centrifuge.on('connecting', (ctx) => {
      status.dataset.transport = '';
      setStatus('connecting', `to ${settings.server} (${ctx.code}: ${ctx.reason})`);
    });
    centrifuge.on('connected', (ctx) => {
      status.dataset.transport = ctx.transport;
      setStatus('connected', `via ${ctx.transport} (${settings.protocol}) to ${settings.server}, client ${ctx.client.slice(0, 8)}`);
      showError('');
    });
    centrifuge.on('disconnected', (ctx) => {
      status.dataset.transport = '';
      setStatus('disconnected', `(${ctx.code}: ${ctx.reason})`);
    });
    centrifuge.on('error', (ctx) => {
      const error = ctx.error || {};
      showError(`${ctx.transport || ctx.type} error ${error.code}: ${error.message}`);
    });

    function setSubscription(state) {
      status.dataset.subscription = state;
      const ready = state === 'subscribed';
      text.disabled = !ready;
      send.disabled = !ready;
    }
    sub.on('subscribing', () => setSubscription('subscribing'));
    sub.on('subscribed', () => {
      setSubscription('subscribed');
      system(`${settings.name} joined #${settings.channel}`);
      text.focus();
    });
    sub.on('unsubscribed', (ctx) => {
      setSubscription('unsubscribed');
      system(`unsubscribed from #${settings.channel} (${ctx.code}: ${ctx.reason})`);
    });
    sub.on('error', (ctx) => showError(`subscription error ${ctx.error.code}: ${ctx.error.message}`));
    sub.on('publication', showPublication);

    $('composer').addEventListener('submit', (event) => {
      event.preventDefault();
      const message = text.value.trim();
      if (!message) {
        return;
      }
      sub.publish(encode({ user: settings.name, text: message })).then(
        () => { text.value = ''; showError(''); },
        (err) => showError(`publish failed ${err.code}: ${err.message}`),
      );
    });

    sub.subscribe();
    centrifuge.connect();
  }

  const sdk = document.createElement('script');
  sdk.src = settings.protocol === 'protobuf' ? 'centrifuge.protobuf.js' : 'centrifuge.js';
  sdk.onload = start;
  sdk.onerror = () => {
    setStatus('disconnected', `could not load the SDK (${sdk.src}): run \`npm ci --prefix web\` where the server runs`);
  };
  document.head.appendChild(sdk);
}());
