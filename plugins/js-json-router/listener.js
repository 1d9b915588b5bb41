// rmq-wasm listener in JavaScript: routes JSON orders, retries the ones marked for retry and
// dead-letters what cannot be parsed. Built on the JavaScript SDK (guest-sdk/js).
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
import {
  ListenerError, Outcome, ProduceError, config, listener, log, producer,
} from '../../guest-sdk/js/rmq-wasm.js';

const encoder = new TextEncoder();

function parseOrder(msg) {
  let order;
  try {
    order = msg.bodyJson();
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

function consume(ctx, messages) {
  const target = config.get('target-topic');
  if (target === undefined) {
    throw new ListenerError('js-json-router: config target-topic is not set');
  }
  const retryField = config.getOr('retry-field', 'retry');
  const delayText = config.get('delay-level');
  const delay = delayText === undefined ? undefined : Number.parseInt(delayText, 10);

  const counts = { routed: 0, retried: 0, dead: 0 };
  const outcomes = messages.map((msg) => {
    const { order, error } = parseOrder(msg);
    if (error !== undefined) {
      counts.dead++;
      return Outcome.deadLetter(`js-json-router: ${error}`);
    }
    if (order[retryField]) {
      counts.retried++;
      return Outcome.retryAfter(delay);
    }
    const out = msg.forwardTo(target);
    out.tags = typeof order.type === 'string' ? order.type : out.tags;
    out.properties.push(['ORDER_ID', String(order.id)], ['ROUTED_FROM', msg.topic]);
    out.body = encoder.encode(JSON.stringify({ ...order, routedBy: 'js' }));
    try {
      producer.send(out);
    } catch (e) {
      if (!(e instanceof ProduceError)) throw e;
      if (e.isTransient) {
        log.warn(`js-json-router: send of ${msg.msgId} failed (${e.kind}), retrying`);
        counts.retried++;
        return Outcome.retry();
      }
      counts.dead++;
      return Outcome.deadLetter(`js-json-router: send ${e.kind}: ${e.detail}`);
    }
    counts.routed++;
    return Outcome.SUCCESS;
  });
  log.info(
    `js-json-router: ${messages.length} from ${ctx.queue.topic}#${ctx.queue.queueId}: ` +
      `${counts.routed} routed, ${counts.retried} retried, ${counts.dead} dead-lettered`,
  );
  return outcomes;
}

export const handler = listener(consume);
