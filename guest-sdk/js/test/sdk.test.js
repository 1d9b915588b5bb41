// Native unit tests of the JavaScript SDK: `cd guest-sdk/js && npm test`
// (= node --import ./testing/register.js --test).
import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import {
  ListenerError, Message, Outcome, ProduceError, config, delayLevel, isLastAttempt, listener, log,
  producer,
} from '../rmq-wasm.js';
import * as testing from '../testing.js';
import { message } from '../testing.js';

const views = (msgs) => {
  const b = testing.batch(msgs);
  return b.messages.map((r) => new Message(r, b.data));
};

/** Retries messages tagged with the configured tag, forwards the rest. */
const retryOrForward = listener((_ctx, msgs) => {
  const tag = config.require('retry-tag');
  const level = config.parse('delay', delayLevel);
  return msgs.map((m) => {
    if (m.hasTag(tag)) {
      log.warn(`retrying ${m.msgId}`);
      return level ? Outcome.retryAfter(level) : Outcome.retry();
    }
    producer.send(m.forwardTo('out'));
    return Outcome.SUCCESS;
  });
});

const twoMessages = () => [
  message('in', 'a', { msgId: '1', tags: 'X' }),
  message('in', 'b', { msgId: '2', tags: 'Y', keys: ['k'], properties: { p: 'v' } }),
];

beforeEach(() => testing.reset());

test('batches are laid out as the host lays them out', () => {
  // The same bytes and spans as guest-sdk/rust's testing.rs test of the same name.
  const a = message('t', 'b1', {
    msgId: 'U', tags: 'T', keys: ['k1', 'k2'], properties: [['z', '1'], ['a', '2']],
    offsetMsgId: 'O1', bornHost: 'h:1', storeHost: 's:2',
  });
  const b = message('t', 'b2', { offsetMsgId: 'O2', bornHost: 'h:1', storeHost: 's:3' });
  const out = testing.batch([a, b]);
  assert.equal(new TextDecoder().decode(out.data), 'tO1a\x012\x02z\x011\x02Uk1 k2Tb1h:1s:2O2b2s:3');
  const span = (s) => [s.start, s.len];
  const [m, n] = out.messages;
  assert.deepEqual([m.topic, m.offsetMsgId, m.msgId].map(span), [[0, 1], [1, 2], [11, 1]]);
  assert.deepEqual(span(m.tags), [17, 1]);
  assert.deepEqual([n.topic, n.bornHost, n.msgId].map(span), [[0, 1], [20, 3], [26, 2]]);
  assert.deepEqual([span(n.storeHost), n.tags, span(n.keys)], [[30, 3], undefined, [28, 0]]);
});

test('message views read every field', () => {
  const [m, bad] = views([
    message('t', 'héllo', {
      tags: 'TagA', keys: ['k1', 'k2'], properties: { é: '', a: '1' }, msgId: 'UNIQ',
      queueOffset: 9, bornTimestampMs: 1_700_000_000_123, storeTimestampMs: 5,
      bornHost: '1.2.3.4:5', storeHost: '6.7.8.9:10', reconsumeTimes: 2,
    }),
    message('u', new Uint8Array([0xff, 0x61]), { offsetMsgId: 'OFF' }),
  ]);
  assert.deepEqual([m.topic, m.msgId, m.queueOffset, m.tags], ['t', 'UNIQ', 9n, 'TagA']);
  assert.ok(m.hasTag('TagA') && !m.hasTag('TagB'));
  assert.deepEqual(m.keys, ['k1', 'k2']);
  assert.ok(m.hasKey('k2') && !m.hasKey('k3'));
  assert.deepEqual(m.properties, [['a', '1'], ['é', '']]);
  assert.deepEqual([m.property('é'), m.property('b')], ['', undefined]);
  assert.deepEqual([m.bodyText(), m.bodyLength], ['héllo', 6]);
  assert.ok(m.bodyContains('llo') && !m.bodyContains('hello'));
  assert.deepEqual([m.bornTimestampMs, m.storeTimestampMs], [1_700_000_000_123n, 5n]);
  assert.deepEqual([m.bornHost, m.storeHost], ['1.2.3.4:5', '6.7.8.9:10']);
  assert.ok(m.isRedelivery && isLastAttempt({ maxReconsumeTimes: 2 }, m));
  assert.deepEqual([bad.tags, bad.keys, bad.msgId, bad.offsetMsgId], [undefined, [], 'OFF', 'OFF']);
  assert.throws(() => bad.bodyText(), TypeError);
  assert.deepEqual([...bad.forwardTo('o').body], [0xff, 0x61]);
});

test('body as JSON', () => {
  const [m, bad] = views([message('t', '{"id": 7}'), message('t', 'not json')]);
  assert.deepEqual(m.bodyJson(), { id: 7 });
  assert.throws(() => bad.bodyJson(), SyntaxError);
});

test('forward copies payload and metadata', () => {
  const [m] = views([message('in', 'body', { tags: 'T', keys: ['k'], properties: { p: 'v' } })]);
  const out = m.forwardTo('out');
  assert.deepEqual({ ...out, body: new TextDecoder().decode(out.body) }, {
    topic: 'out', tags: 'T', keys: ['k'], properties: [['p', 'v']], body: 'body',
  });
});

test('delay levels', () => {
  for (const [text, level] of [['1', 1], ['3', 3], [' 10s ', 3], ['1m', 5], ['2h', 18]]) {
    assert.equal(delayLevel(text), level, text);
  }
  for (const bad of ['0', '19', '15s', '', '-1']) assert.throws(() => delayLevel(bad), ListenerError);
});

test('the listener runs through the handler export', () => {
  testing.setConfig({ 'retry-tag': 'X', delay: '30s' });
  const out = testing.consume(retryOrForward, twoMessages());
  assert.deepEqual(out, [Outcome.retryAfter(4), Outcome.SUCCESS]);
  const [sent] = testing.sent();
  assert.deepEqual([sent.topic, sent.tags, sent.keys, sent.properties], ['out', 'Y', ['k'], [['p', 'v']]]);
  assert.deepEqual(testing.logs(), [['warn', 'retrying 1']]);
  assert.deepEqual(config.all(), [['delay', '30s'], ['retry-tag', 'X']]);
});

test('config errors become listener errors', () => {
  assert.throws(() => testing.consume(retryOrForward, twoMessages()), {
    message: 'config key retry-tag is not set',
  });
  testing.setConfig({ 'retry-tag': 'X', delay: '19' });
  assert.throws(() => testing.consume(retryOrForward, twoMessages()), (e) =>
    e.message.startsWith("config delay = '19': invalid delay level"));
});

test('produce failures reach the listener', () => {
  testing.setConfig({ 'retry-tag': 'none' });
  testing.onSend((m) => testing.fail('denied', `topic ${m.topic} not allowed`));
  const caught = [];
  const l = listener((_ctx, msgs) => msgs.map((m) => {
    try {
      producer.send(m.forwardTo('out'));
    } catch (e) {
      caught.push(e);
    }
    return Outcome.SUCCESS;
  }));
  testing.consume(l, twoMessages());
  assert.ok(caught[0] instanceof ProduceError);
  assert.deepEqual([caught[0].kind, caught[0].detail, caught[0].isTransient], ['denied', 'topic out not allowed', false]);
  assert.deepEqual(testing.sent(), []);
});

test('missing outcomes are retries and extra ones dropped; non-outcomes are errors', () => {
  assert.deepEqual(testing.consume(listener(() => [Outcome.SUCCESS]), twoMessages()), [
    Outcome.SUCCESS, Outcome.retry(),
  ]);
  assert.deepEqual(
    testing.consume(listener(() => [Outcome.SUCCESS, Outcome.SUCCESS]), twoMessages().slice(0, 1)),
    [Outcome.SUCCESS],
  );
  assert.throws(() => testing.consume(listener(() => ['ok']), twoMessages()), TypeError);
  assert.throws(() => log.log('loud', 'x'), TypeError);
});
