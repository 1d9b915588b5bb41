// {{name}}: an rmq-wasm listener. Edit `consume`; `rmq-wasm plugin build` makes {{name}}.wasm.
//
// Per message: the body contains the configured `word` (default "poison") -> dead letter with a
// reason; the tag is `retry-tag` (default "later") -> retry later; otherwise -> success.
import { Outcome, config, listener, log } from './rmq-wasm/rmq-wasm.js';

function consume(ctx, messages) {
  const word = config.getOr('word', 'poison');
  const retryTag = config.getOr('retry-tag', 'later');
  const outcomes = messages.map((m) => {
    if (m.bodyContains(word)) return Outcome.deadLetter(`body contains '${word}'`);
    if (m.hasTag(retryTag)) return Outcome.retry();
    return Outcome.SUCCESS;
  });
  log.debug(`${messages.length} message(s) from ${ctx.queue.topic}`);
  return outcomes;
}

// The component's `rmq:listener/handler` export.
export const handler = listener(consume);
