// rmq-wasm listener in JavaScript: routes JSON orders, retries the ones marked for retry and
// dead-letters what cannot be parsed.
//
// Config:
//   target-topic  (required) where valid orders are produced (body re-serialised with
//                 "routedBy": "js"; tag = the order's "type"; property ORDER_ID = its "id")
//   retry-field   (default "retry") a truthy field of this name means retry-later
//   delay-level   (optional, 1..=18) delay level for those retries
//
// Outcomes: unparseable or non-object JSON, or no "id" -> dead-letter with the reason;
// retry field set -> retry-later; otherwise routed -> success (send timeout/failure -> retry,
// denied/invalid -> dead-letter). Missing target-topic fails the whole batch (listener-error).
import { log } from 'rmq:listener/log@0.2.0';
import { get } from 'rmq:listener/config@0.2.0';
import { send } from 'rmq:listener/producer@0.2.0';

const decoder = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

// A message's text and body are spans ({start, len}) of the batch's `data` (a Uint8Array).
/** The bytes of `span`, as a view into `data` (no copy). */
const bytes = (data, span) => data.subarray(span.start, span.start + span.len);
/** The text of `span` (the host guarantees UTF-8). */
const text = (data, span) => decoder.decode(bytes(data, span));
/** `KEYS` split on its single-space separator; [] when there are none. */
const keyList = (data, span) => text(data, span).split(' ').filter((k) => k !== '');
/** User properties from RocketMQ's encoding (`name U+0001 value U+0002`, repeated), in order. */
const propertyList = (data, span) =>
  text(data, span)
    .split('\x02')
    .filter((p) => p !== '')
    .map((p) => {
      const i = p.indexOf('\x01');
      return [p.slice(0, i), p.slice(i + 1)];
    });

function parseOrder(body) {
  let order;
  try {
    order = JSON.parse(decoder.decode(body));
  } catch (e) {
    return { error: `invalid JSON: ${e.message}` };
  }
  if (order === null || typeof order !== 'object' || Array.isArray(order)) {
    return { error: 'JSON body is not an object' };
  }
  if (order.id === undefined) {
    return { error: 'order has no "id"' };
  }
  return { order };
}

function consume(ctx, { messages, data }) {
  const target = get('target-topic');
  if (target === undefined) {
    // A plain object thrown from a result-returning export becomes its `err` payload.
    throw { message: 'js-json-router: config target-topic is not set' };
  }
  const retryField = get('retry-field') ?? 'retry';
  const delayText = get('delay-level');
  const delay = delayText === undefined ? undefined : Number.parseInt(delayText, 10);

  const counts = { routed: 0, retried: 0, dead: 0 };
  const outcomes = messages.map((msg) => {
    const { order, error } = parseOrder(bytes(data, msg.body));
    if (error !== undefined) {
      counts.dead++;
      return { tag: 'dead-letter', val: `js-json-router: ${error}` };
    }
    if (order[retryField]) {
      counts.retried++;
      return { tag: 'retry-later', val: delay };
    }
    const out = {
      topic: target,
      tags: typeof order.type === 'string' ? order.type : msg.tags && text(data, msg.tags),
      keys: keyList(data, msg.keys),
      properties: [
        ...propertyList(data, msg.properties),
        ['ORDER_ID', String(order.id)],
        ['ROUTED_FROM', text(data, msg.topic)],
      ],
      body: encoder.encode(JSON.stringify({ ...order, routedBy: 'js' })),
    };
    try {
      send(out);
    } catch (e) {
      // Import errors arrive as a thrown ComponentError whose payload is the produce-error.
      const err = e?.payload ?? { tag: 'failed', val: String(e) };
      if (err.tag === 'timeout' || err.tag === 'failed') {
        const msgId = text(data, msg.msgId);
        log('warn', `js-json-router: send of ${msgId} failed (${err.tag}), retrying`);
        counts.retried++;
        return { tag: 'retry-later', val: undefined };
      }
      counts.dead++;
      return { tag: 'dead-letter', val: `js-json-router: send ${err.tag}: ${err.val}` };
    }
    counts.routed++;
    return { tag: 'success' };
  });
  log(
    'info',
    `js-json-router: ${messages.length} from ${ctx.queue.topic}#${ctx.queue.queueId}: ` +
      `${counts.routed} routed, ${counts.retried} retried, ${counts.dead} dead-lettered`,
  );
  return outcomes;
}

export const handler = { consume };
