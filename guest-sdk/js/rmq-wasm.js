// Guest SDK for rmq-wasm listener components written in JavaScript (componentize-js).
//
// A listener is a function `consume(ctx, messages) -> Outcome[]` over `Message` views of the
// batch the host hands over; `export const handler = listener(consume)` exports it. While it runs
// it may `log`, read its own `config` and send through the host's `producer`. In node (native
// unit tests) the three host imports below resolve to the fake host of `testing.js` (loaded with
// `node --import <sdk>/testing/register.js --test`).
//
// The same concepts and names as the Rust SDK (guest-sdk/rust) and the Python one
// (guest-sdk/python), spelled the JavaScript way (camelCase).
import { log as witLog } from 'rmq:listener/log@0.2.0';
import { get as witGet, all as witAll } from 'rmq:listener/config@0.2.0';
import { send as witSend } from 'rmq:listener/producer@0.2.0';

const utf8 = new TextDecoder('utf-8', { fatal: true });
const lossy = new TextDecoder('utf-8');
const NAME_VALUE_SEPARATOR = '\x01';
const PROPERTY_SEPARATOR = '\x02';

/** The broker's default `messageDelayLevel` table, level 1 first. */
export const DELAY_LABELS = [
  '1s', '5s', '10s', '30s', '1m', '2m', '3m', '4m', '5m', '6m', '7m', '8m', '9m', '10m', '20m',
  '30m', '1h', '2h',
];

/** The listener failed the whole batch; the host retries every message of it. */
export class ListenerError extends Error {
  constructor(message) {
    super(message);
    this.name = 'ListenerError';
  }
}

/** Why a send failed: `kind` is 'invalid', 'denied', 'timeout' or 'failed'. */
export class ProduceError extends Error {
  constructor(kind, detail = '') {
    super(detail ? `${kind}: ${detail}` : kind);
    this.name = 'ProduceError';
    this.kind = kind;
    this.detail = detail;
  }

  /** Whether a later attempt may succeed (timeout, failed): retry rather than dead-letter. */
  get isTransient() {
    return this.kind === 'timeout' || this.kind === 'failed';
  }
}

/** A delay level from a number ('3') or a label of the default table ('10s', '1m', '2h'). */
export function delayLevel(text) {
  const s = String(text).trim();
  if (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 18) return Number(s);
  const i = DELAY_LABELS.indexOf(s);
  if (i >= 0) return i + 1;
  throw new ListenerError(
    `invalid delay level '${s}': expected 1..=18 or one of 1s 5s 10s 30s 1m .. 10m 20m 30m 1h 2h`,
  );
}

/**
 * What to do with one message, already in the WIT shape the host reads:
 * `Outcome.SUCCESS`, `Outcome.retry()`, `Outcome.retryAfter(level)`, `Outcome.deadLetter(reason)`.
 */
export const Outcome = Object.freeze({
  SUCCESS: Object.freeze({ tag: 'success' }),
  /** Deliver again later, at the broker's next level (3 + reconsume times). */
  retry: () => ({ tag: 'retry-later', val: undefined }),
  /** Deliver again after delay level `level` (1..=18; the host clamps others). */
  retryAfter: (level) => ({ tag: 'retry-later', val: level }),
  /** Send to `%DLQ%<group>` now; `reason` is recorded in the DLQ copy. */
  deadLetter: (reason) => ({ tag: 'dead-letter', val: reason }),
});

/** One consumed message, read in place from the batch's `data` (spans, no copies). */
export class Message {
  #r;
  #data;

  constructor(record, data) {
    this.#r = record;
    this.#data = data;
  }

  #bytes(span) {
    return this.#data.subarray(span.start, span.start + span.len);
  }

  #text(span) {
    return lossy.decode(this.#bytes(span));
  }

  /** The message's topic (the original one for redelivered messages). */
  get topic() { return this.#text(this.#r.topic); }
  get queueOffset() { return this.#r.queueOffset; }
  /** `UNIQ_KEY`, or the offset msg id when the message has none. */
  get msgId() { return this.#text(this.#r.msgId); }
  /** Broker-generated id (store host + commit-log offset). */
  get offsetMsgId() { return this.#text(this.#r.offsetMsgId); }
  /** `KEYS` split on spaces; [] when there are none. */
  get keys() { return this.#text(this.#r.keys).split(' ').filter((k) => k !== ''); }
  hasKey(key) { return this.keys.includes(key); }
  /** The tag, or undefined. */
  get tags() { return this.#r.tags === undefined ? undefined : this.#text(this.#r.tags); }
  hasTag(tag) { return this.tags === tag; }

  /** User properties as [name, value] pairs, sorted by name (system properties excluded). */
  get properties() {
    return this.#text(this.#r.properties)
      .split(PROPERTY_SEPARATOR)
      .filter((p) => p.includes(NAME_VALUE_SEPARATOR))
      .map((p) => {
        const i = p.indexOf(NAME_VALUE_SEPARATOR);
        return [p.slice(0, i), p.slice(i + 1)];
      });
  }

  /** The user property `name` (the last one if set twice), or undefined. */
  property(name) {
    return this.properties.filter(([k]) => k === name).map(([, v]) => v).pop();
  }

  /** The payload, a Uint8Array view into the batch (copy it to keep it past the call). */
  get body() { return this.#bytes(this.#r.body); }
  get bodyLength() { return this.#r.body.len; }
  /** The body as UTF-8 (a TypeError when it is not). */
  bodyText() { return utf8.decode(this.body); }
  /** The body parsed as JSON (a TypeError or SyntaxError when it is not UTF-8 JSON). */
  bodyJson() { return JSON.parse(this.bodyText()); }

  /** Whether the body contains `needle` (a string, as UTF-8, or a Uint8Array). */
  bodyContains(needle) {
    const n = typeof needle === 'string' ? new TextEncoder().encode(needle) : needle;
    const hay = this.body;
    outer: for (let i = 0; i + n.length <= hay.length; i++) {
      for (let j = 0; j < n.length; j++) if (hay[i + j] !== n[j]) continue outer;
      return true;
    }
    return false;
  }

  /** Deliveries before this one (0 on first delivery). */
  get reconsumeTimes() { return this.#r.reconsumeTimes; }
  get isRedelivery() { return this.#r.reconsumeTimes > 0; }
  /** Producer clock, ms since the Unix epoch (a bigint, as the WIT u64). */
  get bornTimestampMs() { return this.#r.bornTimestamp; }
  /** Broker clock, ms since the Unix epoch (a bigint). */
  get storeTimestampMs() { return this.#r.storeTimestamp; }
  get bornHost() { return this.#text(this.#r.bornHost); }
  get storeHost() { return this.#text(this.#r.storeHost); }

  /** An outgoing copy for `topic`: same tags, keys, properties and body. */
  forwardTo(topic) {
    return {
      topic,
      tags: this.tags,
      keys: this.keys,
      properties: this.properties,
      body: this.body.slice(),
    };
  }
}

/** Whether a retry of `msg` would send it to the DLQ instead (`ctx` of the call). */
export const isLastAttempt = (ctx, msg) => msg.reconsumeTimes >= ctx.maxReconsumeTimes;

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

/** The host's `log` import; the host caps line length and rate. */
export const log = Object.freeze({
  log(level, message) {
    if (!LEVELS.includes(level)) throw new TypeError(`log level '${level}' is not one of ${LEVELS}`);
    witLog(level, String(message));
  },
  trace: (m) => log.log('trace', m),
  debug: (m) => log.log('debug', m),
  info: (m) => log.log('info', m),
  warn: (m) => log.log('warn', m),
  error: (m) => log.log('error', m),
});

/** The host's `config` import: the listener's own `[listener.config]` table. */
export const config = Object.freeze({
  /** The value for `key`, or undefined. */
  get: (key) => witGet(key),
  /** Every [key, value] pair, sorted by key. */
  all: () => witAll(),
  getOr: (key, fallback) => witGet(key) ?? fallback,
  /** The value for `key`; a ListenerError naming the key when it is not set. */
  require(key) {
    const v = witGet(key);
    if (v === undefined) throw new ListenerError(`config key ${key} is not set`);
    return v;
  },
  /** `convert(value)` for `key` (e.g. `delayLevel`, `Number`), undefined when not set; a
   * ListenerError naming the key and value when it throws or gives NaN. */
  parse(key, convert) {
    const v = witGet(key);
    if (v === undefined) return undefined;
    let out;
    try {
      out = convert(v);
    } catch (e) {
      throw new ListenerError(`config ${key} = '${v}': ${e.message}`);
    }
    if (Number.isNaN(out)) throw new ListenerError(`config ${key} = '${v}': not a number`);
    return out;
  },
});

/** The host's `producer` import: granted per listener, bounded, counted. */
export const producer = Object.freeze({
  /** Sends `{topic, body, tags?, keys?, properties?}`; a ProduceError when it fails. */
  send(msg) {
    const out = {
      topic: msg.topic,
      tags: msg.tags,
      keys: msg.keys ?? [],
      properties: msg.properties ?? [],
      body: typeof msg.body === 'string' ? new TextEncoder().encode(msg.body) : msg.body,
    };
    try {
      return witSend(out);
    } catch (e) {
      // Import errors arrive as a thrown ComponentError whose payload is the produce-error.
      const err = e?.payload ?? { tag: 'failed', val: String(e) };
      throw new ProduceError(err.tag, err.val ?? '');
    }
  },
});

/** The views of a WIT batch's messages. */
export const messages = ({ messages: records, data }) => records.map((r) => new Message(r, data));

/**
 * The `handler` export for `consume(ctx, messages)`: `export const handler = listener(consume)`.
 * A ListenerError thrown by the listener fails the whole batch (retried); anything else traps
 * the component (the host retries, then isolates the poison message).
 */
export function listener(consume) {
  return {
    consume(ctx, batch) {
      let outcomes;
      try {
        outcomes = consume(ctx, messages(batch));
      } catch (e) {
        // A plain object thrown from a result-returning export becomes its `err` payload.
        if (e instanceof ListenerError) throw { message: e.message };
        throw e;
      }
      for (const o of outcomes) {
        if (!['success', 'retry-later', 'dead-letter'].includes(o?.tag)) {
          throw new TypeError(`a listener returns Outcome values, not ${JSON.stringify(o)}`);
        }
      }
      return outcomes;
    },
  };
}
