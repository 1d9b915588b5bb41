// Smoke test for the built listener components, without the Rust host: each component is
// transpiled to JS with jco (installed by build-plugins.sh for the JS plugin) and called in node
// against a fake host (log / config / producer) and deny-by-default WASI stubs that record every
// WASI function the component calls.
//
// Usage: node scripts/smoke-plugins.mjs <plugins-dir> <jco-bin> <work-dir> [plugin,plugin,...]
// (scripts/build-plugins.sh --smoke runs it). The optional fourth argument runs only the named
// plugins (default: all). Exits 1 when a plugin misbehaves.
//
// What the stubs answer (what a deny-by-default host must answer for these guests to work):
// environment/arguments empty, no preopened directories, stdio = a sink stream, no terminal,
// socket creation access-denied, clocks fixed; anything else traps.
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

const [pluginsDir, jco, workDir] = process.argv.slice(2, 5).map((p) => resolve(p));
const only = process.argv[5]?.split(',').filter((n) => n !== '');

// ---- deny-by-default WASI -------------------------------------------------------------------
const wasiCalls = new Map(); // "iface#fn" -> count
const note = (name) => wasiCalls.set(name, (wasiCalls.get(name) ?? 0) + 1);
class Denied extends Error {}

function resourceClass(iface, name, methods = {}) {
  const cls = class {};
  Object.defineProperty(cls, 'name', { value: name });
  return new Proxy(cls, {
    get(target, prop) {
      if (prop === 'prototype') {
        return new Proxy(target.prototype, {
          get(proto, method) {
            if (typeof method !== 'string' || method === 'constructor') return proto[method];
            return function (...args) {
              note(`${iface}#[method]${name}.${method}`);
              if (methods[method]) return methods[method].apply(this, args);
              throw new Denied(`${iface} ${name}.${method} denied`);
            };
          },
        });
      }
      return target[prop];
    },
  });
}

const sinkBytes = { n: 0 };
function wasiInterface(key) {
  const iface = key.replace(/@.*/, '');
  const classes = {};
  const known = {
    'wasi:cli/environment': { getEnvironment: () => [], getArguments: () => [], initialCwd: () => undefined },
    'wasi:cli/stdout': { getStdout: () => new classes.OutputStream() },
    'wasi:cli/stderr': { getStderr: () => new classes.OutputStream() },
    'wasi:cli/stdin': { getStdin: () => new classes.InputStream() },
    'wasi:cli/terminal-stdin': { getTerminalStdin: () => undefined },
    'wasi:cli/terminal-stdout': { getTerminalStdout: () => undefined },
    'wasi:cli/terminal-stderr': { getTerminalStderr: () => undefined },
    'wasi:filesystem/preopens': { getDirectories: () => [] },
    'wasi:sockets/instance-network': { instanceNetwork: () => new classes.Network() },
    'wasi:sockets/tcp-create-socket': {
      createTcpSocket: () => {
        throw { payload: 'access-denied' };
      },
    },
    'wasi:sockets/udp-create-socket': {
      createUdpSocket: () => {
        throw { payload: 'access-denied' };
      },
    },
    'wasi:sockets/ip-name-lookup': {
      resolveAddresses: () => {
        throw { payload: 'permanent-resolver-failure' };
      },
    },
    'wasi:clocks/wall-clock': { now: () => ({ seconds: 1_700_000_000n, nanoseconds: 0 }) },
    'wasi:clocks/monotonic-clock': { now: () => 0n, resolution: () => 1n },
  }[iface] ?? {};
  const classMethods = {
    OutputStream: {
      checkWrite: () => 65536n,
      write: (b) => {
        sinkBytes.n += b.length;
      },
      blockingWriteAndFlush: (b) => {
        sinkBytes.n += b.length;
      },
      flush: () => {},
      blockingFlush: () => {},
    },
    InputStream: {},
    Network: {},
  };
  return new Proxy(
    {},
    {
      get(_, prop) {
        if (typeof prop !== 'string') return undefined;
        if (/^[A-Z]/.test(prop)) {
          classes[prop] ??= resourceClass(iface, prop, classMethods[prop]);
          return classes[prop];
        }
        return (...args) => {
          note(`${iface}#${prop}`);
          if (known[prop]) return known[prop](...args);
          throw new Denied(`${iface}#${prop} denied`);
        };
      },
      has: () => true,
    },
  );
}

// ---- fake rmq:listener host -----------------------------------------------------------------
function fakeHost(config) {
  const state = { logs: [], sent: [] };
  const imports = {
    'rmq:listener/types@0.2.0': {},
    'rmq:listener/log@0.2.0': { log: (level, message) => state.logs.push([level, message]) },
    'rmq:listener/config@0.2.0': {
      get: (key) => config[key],
      all: () => Object.entries(config).sort(([a], [b]) => (a < b ? -1 : 1)),
    },
    'rmq:listener/producer@0.2.0': {
      send: (msg) => {
        if (msg.topic === '__hang__') throw { payload: { tag: 'timeout' } };
        if (msg.topic === 'forbidden') throw { payload: { tag: 'denied', val: 'topic not allowed' } };
        state.sent.push(msg);
        return {
          status: 'ok',
          msgId: `FAKE${state.sent.length}`,
          offsetMsgId: '',
          queue: { topic: msg.topic, brokerName: 'fake', queueId: 0 },
          queueOffset: BigInt(state.sent.length),
        };
      },
    },
  };
  return { state, imports };
}

const enc = new TextEncoder();
const dec = new TextDecoder();
// A message as a Java listener would see it (plain strings and lists); `batch` encodes these.
function message(body, extra = {}) {
  return {
    queueOffset: 7n,
    bornTimestamp: 1_700_000_000_000n,
    storeTimestamp: 1_700_000_000_100n,
    reconsumeTimes: extra.reconsumeTimes ?? 0,
    topic: extra.topic ?? 'in',
    msgId: extra.msgId ?? 'M1',
    offsetMsgId: 'O1',
    keys: extra.keys ?? [],
    tags: extra.tags,
    properties: extra.properties ?? [['p', 'v']],
    body: typeof body === 'string' ? enc.encode(body) : body,
    bornHost: '127.0.0.1:5000',
    storeHost: '127.0.0.1:10911',
  };
}

// Encodes `message` specs into the wire shape of `batch` as the host builds it: fixed-size
// records whose text and body are spans ({start, len}) of one `data` buffer. Keys are joined with
// one space; properties are RocketMQ's `name \x01 value \x02`, repeated; tags is an optional span.
function batch(msgs) {
  const chunks = [];
  let size = 0;
  const span = (value) => {
    const bytes = typeof value === 'string' ? enc.encode(value) : value;
    chunks.push(bytes);
    size += bytes.length;
    return { start: size - bytes.length, len: bytes.length };
  };
  const messages = msgs.map((m) => ({
    queueOffset: m.queueOffset,
    bornTimestamp: m.bornTimestamp,
    storeTimestamp: m.storeTimestamp,
    reconsumeTimes: m.reconsumeTimes,
    topic: span(m.topic),
    msgId: span(m.msgId),
    offsetMsgId: span(m.offsetMsgId),
    keys: span(m.keys.join(' ')),
    tags: m.tags === undefined ? undefined : span(m.tags),
    properties: span(m.properties.map(([k, v]) => `${k}\x01${v}\x02`).join('')),
    body: span(m.body),
    bornHost: span(m.bornHost),
    storeHost: span(m.storeHost),
  }));
  const data = new Uint8Array(size);
  chunks.reduce((at, c) => (data.set(c, at), at + c.length), 0);
  return { messages, data };
}
const ctx = {
  mode: 'concurrently',
  consumerGroup: 'g',
  queue: { topic: 'in', brokerName: 'broker-a', queueId: 1 },
  maxReconsumeTimes: 16,
};

const S = { tag: 'success' };
const retry = (val) => ({ tag: 'retry-later', val });
const dlq = (prefix) => ({ dlqPrefix: prefix });
// Deep equality of plain data (strings, numbers, arrays, objects, BigInt).
const same = (a, b) => show(a) === show(b);

// plugin -> scenarios: [config, messages, expected outcomes | {err: prefix} | 'trap', check?]
const scenarios = {
  filter: [
    [
      { tag: 'hold', 'body-contains': 'later', 'delay-level': '1m' },
      [message('x', { tags: 'hold' }), message('do it later'), message('now', { tags: 'go' })],
      [retry(5), retry(5), S],
    ],
    [{}, [message('x')], { err: 'filter: configure' }],
  ],
  router: [
    [
      { 'target-topic': 'out' },
      [message('a', { keys: ['k'] }), message('b')],
      [S, S],
      (st) => st.sent.length === 2 && st.sent[0].properties.some(([k, v]) => k === 'ROUTED_FROM' && v === 'in'),
    ],
    [{ 'target-topic': 'forbidden' }, [message('a')], [dlq('router: denied')]],
  ],
  'config-echo': [
    [
      { 'succeed-after': '1', colour: 'blue' },
      [message('a'), message('b', { reconsumeTimes: 1 })],
      [retry(1), S],
      (st) => st.logs.some(([, l]) => l === 'config colour = blue'),
    ],
  ],
  'trap-on-key': [
    [{ key: 'poison' }, [message('a', { keys: ['ok'] })], [S]],
    [{ key: 'poison' }, [message('a'), message('b', { keys: ['poison'] })], 'trap'],
  ],
  'hang-in-host-call': [[{}, [message('a')], { err: 'produce failed: timed out' }]],
  'log-flood': [
    [{ lines: '1000', 'huge-line-kib': '64' }, [message('a')], [S], (st) => st.logs.length === 1001],
  ],
  'fs-escape': [[{}, [message('a')], { err: 'fs-escape: blocked' }]],
  'deep-recursion': [[{}, [message('a')], 'trap'], [{ depth: '100' }, [message('a')], [S]]],
  'py-json-router': [
    [
      { 'route.order': 'orders', 'default-topic': 'other', 'delay-level': '3' },
      [
        message('{"kind": "order", "id": 1, "key": "o-1"}', {
          keys: ['k1', 'k2'],
          tags: 't',
          properties: [['p', 'v'], ['q', 'wé']],
        }),
        message('{"kind": "refund", "retry": true}'),
        message('{"kind": "misc"}'),
        message('not json'),
        message('[1, 2]'),
      ],
      [S, retry(3), S, dlq('py-json-router: invalid JSON'), dlq('py-json-router: JSON body is not an object')],
      // The routed copies carry the original tags, keys, properties and body, decoded exactly.
      (st) =>
        st.sent.length === 2 &&
        same(st.sent[0], {
          topic: 'orders',
          tags: 't',
          keys: ['k1', 'k2', 'o-1'],
          properties: [['p', 'v'], ['q', 'wé'], ['EVENT_KIND', 'order'], ['ROUTED_FROM', 'in']],
          body: st.sent[0].body,
        }) &&
        dec.decode(st.sent[0].body) === '{"kind": "order", "id": 1, "key": "o-1"}' &&
        same(st.sent[1], {
          topic: 'other',
          tags: undefined,
          keys: [],
          properties: [['p', 'v'], ['EVENT_KIND', 'misc'], ['ROUTED_FROM', 'in']],
          body: st.sent[1].body,
        }) &&
        dec.decode(st.sent[1].body) === '{"kind": "misc"}' &&
        same(st.logs, [['info', 'py-json-router: 5 from in#1: 2 routed, 1 retried, 2 dead-lettered']]),
    ],
    [{ 'delay-level': 'x' }, [message('{}')], { err: 'py-json-router: config delay-level' }],
  ],
  'js-json-router': [
    [
      { 'target-topic': 'orders', 'delay-level': '2' },
      [
        message('{"id": 1, "type": "big"}', {
          keys: ['k1', 'k2'],
          tags: 't',
          properties: [['p', 'v'], ['q', 'wé']],
        }),
        message('{"id": 2, "retry": 1}'),
        message('{"x": 1}'),
        message('{'),
      ],
      [S, retry(2), dlq('js-json-router: order has no "id"'), dlq('js-json-router: invalid JSON')],
      (st) =>
        st.sent.length === 1 &&
        same(st.sent[0], {
          topic: 'orders',
          tags: 'big',
          keys: ['k1', 'k2'],
          properties: [['p', 'v'], ['q', 'wé'], ['ORDER_ID', '1'], ['ROUTED_FROM', 'in']],
          body: st.sent[0].body,
        }) &&
        same(JSON.parse(dec.decode(st.sent[0].body)), { id: 1, type: 'big', routedBy: 'js' }) &&
        same(st.logs, [['info', 'js-json-router: 4 from in#1: 1 routed, 1 retried, 2 dead-lettered']]),
    ],
    // Without a "type", the copy keeps the message's own tags.
    [
      { 'target-topic': 'orders' },
      [message('{"id": "x"}', { tags: 'keep', keys: ['only'] })],
      [S],
      (st) =>
        st.sent.length === 1 &&
        st.sent[0].tags === 'keep' &&
        same(st.sent[0].keys, ['only']) &&
        same(st.sent[0].properties, [['p', 'v'], ['ORDER_ID', 'x'], ['ROUTED_FROM', 'in']]),
    ],
    [{}, [message('{}')], { err: 'js-json-router: config target-topic' }],
  ],
};

function matches(actual, expected) {
  if (expected.dlqPrefix !== undefined) {
    return actual.tag === 'dead-letter' && String(actual.val).startsWith(expected.dlqPrefix);
  }
  return actual.tag === expected.tag && actual.val === expected.val;
}

const show = (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}n` : x));
let failures = 0;
const unknown = only?.filter((n) => !(n in scenarios)) ?? [];
if (unknown.length) {
  console.error(`no scenarios for ${unknown.join(', ')}; known: ${Object.keys(scenarios).join(', ')}`);
  process.exit(2);
}
const selected = Object.entries(scenarios).filter(([name]) => !only || only.includes(name));
for (const [name, cases] of selected) {
  const wasm = join(pluginsDir, `${name}.wasm`);
  const out = join(workDir, name);
  execFileSync(jco, ['transpile', wasm, '--instantiation', 'async', '--name', name, '-q', '-o', out], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const { instantiate } = await import(join(out, `${name}.js`));
  const getCoreModule = async (p) => WebAssembly.compile(await readFile(join(out, p)));
  wasiCalls.clear();
  let ok = true;
  const notes = [];
  for (const [config, msgs, expected, check] of cases) {
    const { state, imports } = fakeHost(config);
    // jco looks imports up with and without the @version suffix.
    const byName = Object.fromEntries(Object.entries(imports).map(([k, v]) => [k.replace(/@.*/, ''), v]));
    const allImports = new Proxy(imports, {
      get: (_, key) => {
        if (typeof key !== 'string') return undefined;
        const bare = key.replace(/@.*/, '');
        return byName[bare] ?? (bare.startsWith('wasi:') ? wasiInterface(bare) : undefined);
      },
      has: () => true,
    });
    let result;
    try {
      // A fresh instance per call, like the host's default.
      const inst = await instantiate(getCoreModule, allImports);
      result = { ok: inst['rmq:listener/handler@0.2.0'].consume(ctx, batch(msgs)) };
    } catch (e) {
      result = e?.payload !== undefined ? { err: e.payload } : { trap: `${e?.constructor?.name}: ${e?.message}` };
    }
    let pass;
    if (expected === 'trap') pass = result.trap !== undefined && !/denied/.test(result.trap);
    else if (expected.err !== undefined) pass = result.err?.message?.startsWith(expected.err);
    else pass = result.ok?.length === expected.length && result.ok.every((o, i) => matches(o, expected[i]));
    if (pass && check) pass = check(state);
    if (!pass) {
      ok = false;
      notes.push(`config ${show(config)}: got ${show(result)}; logs ${show(state.logs.slice(0, 3))}`);
    } else if (result.err) {
      notes.push(`err: ${result.err.message.slice(0, 600)}`);
    } else if (result.trap) {
      notes.push(`trap: ${result.trap.slice(0, 80)}`);
    }
  }
  const calls = [...wasiCalls.entries()].map(([k, n]) => `${k}×${n}`).join(' ') || 'none';
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${cases.length} case(s); WASI calls: ${calls}`);
  for (const n of notes) console.log(`       ${n}`);
  if (!ok) failures++;
}
console.log(`${selected.length - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
