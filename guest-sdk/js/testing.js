// A fake host for native unit tests of listener logic (node, no Wasm, no cluster):
//   node --import <sdk>/testing/register.js --test
// `message(...)` describes a consumed message; `consume` lays a list of them out exactly as the
// host lays out a batch (`batch`) and calls the listener's `handler` export, so the listener
// reads them through the same `Message` views it gets in Wasm.
import { Outcome } from './rmq-wasm.js';

const state = { config: new Map(), logs: [], sent: [], sendHook: undefined };

/** Served as `rmq:listener/*@0.2.0` by testing/hooks.js. */
export const fakeHost = {
  log: (level, message) => state.logs.push([level, message]),
  get: (key) => state.config.get(key),
  all: () => [...state.config.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  send(msg) {
    // A hook returns a receipt, or throws { payload: { tag, val } } as the component glue does.
    const n = state.sent.length;
    const receipt = state.sendHook
      ? state.sendHook(msg)
      : {
          status: 'ok',
          msgId: `FAKE${n.toString(16).toUpperCase().padStart(16, '0')}`,
          offsetMsgId: '',
          queue: { topic: msg.topic, brokerName: 'fake-broker', queueId: 0 },
          queueOffset: BigInt(n),
        };
    state.sent.push(msg);
    return receipt;
  },
};

/** Clears config, logs, sent messages and the send hook. */
export function reset() {
  state.config = new Map();
  state.logs = [];
  state.sent = [];
  state.sendHook = undefined;
}

/** Replaces the listener's config with `pairs` (an object). */
export const setConfig = (pairs) => {
  state.config = new Map(Object.entries(pairs));
};
/** Decides every later send: return a receipt, or call `fail(kind, detail)` to refuse it. */
export const onSend = (hook) => {
  state.sendHook = hook;
};
/** Throws what the component glue throws for a failed send. */
export const fail = (tag, val) => {
  throw { payload: { tag, val } };
};
/** [level, line] logged so far, oldest first. */
export const logs = () => [...state.logs];
/** Messages successfully sent so far, oldest first. */
export const sent = () => [...state.sent];

/**
 * A test message on `topic` (a string body is UTF-8 encoded); other fields by name: tags, keys,
 * properties (object or pairs), msgId, offsetMsgId, queueOffset, bornTimestampMs,
 * storeTimestampMs, bornHost, storeHost, reconsumeTimes.
 */
export function message(topic, body = '', fields = {}) {
  const props = fields.properties ?? [];
  return {
    topic,
    body: typeof body === 'string' ? new TextEncoder().encode(body) : body,
    tags: fields.tags,
    keys: fields.keys ?? [],
    properties: Array.isArray(props) ? props : Object.entries(props),
    msgId: fields.msgId ?? '',
    offsetMsgId: fields.offsetMsgId ?? '',
    queueOffset: BigInt(fields.queueOffset ?? 0),
    bornTimestampMs: BigInt(fields.bornTimestampMs ?? 0),
    storeTimestampMs: BigInt(fields.storeTimestampMs ?? 0),
    bornHost: fields.bornHost ?? '',
    storeHost: fields.storeHost ?? '',
    reconsumeTimes: fields.reconsumeTimes ?? 0,
  };
}

/**
 * `msgs` as the host's batch, byte for byte (host/src/wasm/convert.rs `batch`): each message
 * appends topic, offset msg id, user properties sorted by name, UNIQ_KEY, keys, tags, body, born
 * host, store host to one buffer; a topic or host equal to the previous message's is written
 * once and its span shared.
 */
export function batch(msgs) {
  const enc = new TextEncoder();
  const chunks = [];
  let len = 0;
  const span = (bytes) => {
    const b = typeof bytes === 'string' ? enc.encode(bytes) : bytes;
    chunks.push(b);
    len += b.length;
    return { start: len - b.length, len: b.length };
  };
  const last = {};
  const once = (field, value) => {
    if (last[field]?.value === value) return last[field].span;
    last[field] = { value, span: span(value) };
    return last[field].span;
  };
  const records = msgs.map((m) => {
    const topic = once('topic', m.topic);
    const offsetMsgId = span(m.offsetMsgId);
    const sorted = [...m.properties].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const properties = span(sorted.map(([k, v]) => `${k}\x01${v}\x02`).join(''));
    const msgId = m.msgId ? span(m.msgId) : offsetMsgId;
    const keys = span(m.keys.join(' '));
    const tags = m.tags === undefined ? undefined : span(m.tags);
    const body = span(m.body);
    const bornHost = once('bornHost', m.bornHost);
    const storeHost = once('storeHost', m.storeHost);
    return {
      queueOffset: m.queueOffset,
      bornTimestamp: m.bornTimestampMs,
      storeTimestamp: m.storeTimestampMs,
      reconsumeTimes: m.reconsumeTimes,
      topic, msgId, offsetMsgId, keys, tags, properties, body, bornHost, storeHost,
    };
  });
  const data = new Uint8Array(len);
  let at = 0;
  for (const c of chunks) {
    data.set(c, at);
    at += c.length;
  }
  return { messages: records, data };
}

/**
 * Calls `handler` (the listener's export, `listener(consume)`) on `msgs` laid out as the host lays
 * out a batch; like the host, a short answer is padded with `Outcome.retry()` and extra outcomes
 * are dropped. A listener-error comes back as a thrown `{ message }`, as the host would see it.
 */
export function consume(handler, msgs, ctx = {}) {
  const context = {
    mode: 'concurrently',
    consumerGroup: 'test-group',
    queue: { topic: msgs[0]?.topic ?? '', brokerName: 'fake-broker', queueId: 0 },
    maxReconsumeTimes: 16,
    ...ctx,
  };
  const out = handler.consume(context, batch(msgs)).slice(0, msgs.length);
  while (out.length < msgs.length) out.push(Outcome.retry());
  return out;
}
