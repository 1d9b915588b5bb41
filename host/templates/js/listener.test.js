// Native tests of the listener: `npm test` (node --test with the SDK's fake host; no Wasm).
import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import { Outcome } from './rmq-wasm/rmq-wasm.js';
import * as testing from './rmq-wasm/testing.js';
import { handler } from './listener.js';

beforeEach(() => testing.reset());

test('accepts, retries and dead-letters', () => {
  testing.setConfig({ word: 'poison' });
  const msgs = [
    testing.message('orders', 'a fine order'),
    testing.message('orders', 'a poison order'),
    testing.message('orders', 'not yet', { tags: 'later' }),
  ];
  assert.deepEqual(testing.consume(handler, msgs), [
    Outcome.SUCCESS,
    Outcome.deadLetter("body contains 'poison'"),
    Outcome.retry(),
  ]);
});
