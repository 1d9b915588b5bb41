"""Hostile rmq-wasm listener in Python (componentize-py), for the sandbox tests.

Config `mode`:
  loop    spin forever (the fuel budget or the epoch deadline must stop it)
  memory  allocate 1 MiB blocks and keep them, forever (the memory cap must stop it)
  (unset) succeed for every message: the runtime's own cost, for the memory-headroom figure
"""

import rmq_wasm
from rmq_wasm import Outcome, config


def consume(ctx, msgs):
    mode = config.get("mode")
    if mode == "loop":
        n = 0
        while True:
            n = (n * 31 + 7) % 1_000_003
    if mode == "memory":
        kept = []
        while True:
            kept.append(bytearray(1 << 20))
    return [Outcome.SUCCESS for _ in msgs]


Handler = rmq_wasm.handler(consume)
