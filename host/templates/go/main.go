// A RocketMQ listener for rmq-wasm: dead-letters empty messages, retries messages tagged with the
// configured `retry-tag` once, and accepts the rest.
package main

import "rmqwasm.dev/sdk/rmq"

func init() { rmq.Handle(consume) }

// main is not called: the host calls the handler registered in init.
func main() {}

func consume(ctx *rmq.ConsumeContext, msgs []rmq.Message) ([]rmq.Outcome, error) {
	retryTag := rmq.Config.Or("retry-tag", "retry")
	out := make([]rmq.Outcome, len(msgs))
	for i, m := range msgs {
		switch {
		case len(m.Body()) == 0:
			out[i] = rmq.DeadLetter("empty body")
		case m.HasTag(retryTag) && !m.IsRedelivery():
			out[i] = rmq.Retry()
		default:
			out[i] = rmq.Success()
		}
	}
	rmq.Log.Infof("%d messages from %s#%d", len(msgs), ctx.Queue.Topic, ctx.Queue.QueueID)
	return out, nil
}
