"""{{name}}: an rmq-wasm listener. Edit `consume`; `rmq-wasm plugin build` makes {{name}}.wasm.

Per message: the body contains the configured `word` (default "poison") -> dead letter with a
reason; the tag is `retry-tag` (default "later") -> retry later; otherwise -> success.
"""

from typing import List

import rmq_wasm
from rmq_wasm import ConsumeContext, Message, Outcome, config, log


def consume(ctx: ConsumeContext, msgs: List[Message]) -> List[Outcome]:
    word = config.get_or("word", "poison")
    retry_tag = config.get_or("retry-tag", "later")
    outcomes = []
    for m in msgs:
        if m.body_contains(word.encode()):
            outcomes.append(Outcome.dead_letter(f"body contains '{word}'"))
        elif m.has_tag(retry_tag):
            outcomes.append(Outcome.retry())
        else:
            outcomes.append(Outcome.SUCCESS)
    log.debug(f"{len(msgs)} message(s) from {ctx.queue.topic}")
    return outcomes


# componentize-py exports the class called `Handler` of the module `app`.
Handler = rmq_wasm.handler(consume)
