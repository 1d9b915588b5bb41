// {{name}}: an rmq-wasm listener. Edit consume; `rmq-wasm plugin build` makes {{name}}.wasm.
//
// Per message: the body contains the configured `word` (default "poison") -> dead letter with a
// reason; the tag is `retry-tag` (default "later") -> retry later; otherwise -> success.
package main

import "rmqwasm.dev/sdk/rmq"

func init() { rmq.Handle(consume) }

// main is not called: the host calls the handler registered in init.
func main() {}

func consume(ctx *rmq.ConsumeContext, msgs []rmq.Message) ([]rmq.Outcome, error) {
	word := rmq.Config.Or("word", "poison")
	retryTag := rmq.Config.Or("retry-tag", "later")
	out := make([]rmq.Outcome, len(msgs))
	for i, m := range msgs {
		switch {
		case m.BodyContains([]byte(word)):
			out[i] = rmq.DeadLetter("body contains '" + word + "'")
		case m.HasTag(retryTag):
			out[i] = rmq.Retry()
		default:
			out[i] = rmq.Success()
		}
	}
	rmq.Log.Debugf("%d message(s) from %s", len(msgs), ctx.Queue.Topic)
	return out, nil
}
