// Hostile rmq-wasm listener in JavaScript, for the sandbox tests. Built with js-json-router's
// toolchain (no package.json of its own; see scripts/build-plugins.sh).
//
// Config `mode`:
//   loop    spin forever in the JS engine (the fuel budget or the epoch deadline must stop it)
//   memory  allocate 1 MiB buffers and keep them, forever (the memory cap must stop it)
//   (unset) succeed for every message
import { Outcome, config, listener } from '../../guest-sdk/js/rmq-wasm.js';

function consume(_ctx, messages) {
  const mode = config.get('mode');
  if (mode === 'loop') {
    let n = 0;
    for (;;) {
      n = (n * 31 + 7) % 1000003;
    }
  }
  if (mode === 'memory') {
    const kept = [];
    for (;;) {
      const block = new Uint8Array(1 << 20);
      block.fill(kept.length & 0xff);
      kept.push(block);
    }
  }
  return messages.map(() => Outcome.SUCCESS);
}

export const handler = listener(consume);
