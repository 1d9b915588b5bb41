package rmq

import (
	"fmt"

	types "rmqwasm.dev/sdk/internal/wit/imports/rmq_listener_types"
	witTypes "rmqwasm.dev/sdk/internal/witpkg/types"
)

// Handler handles one batch of messages from one message queue: one Outcome per message, in
// order. Like Java's ackIndex, the host retries messages without an outcome and ignores extra
// ones. An error fails the whole batch: every message of it is retried.
//
// By default every call runs in a fresh instance; in the host's opt-in warm mode
// (instance_reuse = N) one instance serves up to N calls, package variables included, so keep
// no per-batch state in them.
type Handler func(ctx *ConsumeContext, msgs []Message) ([]Outcome, error)

var handler Handler

// Handle registers h as the listener; call it once, from an init function of package main.
func Handle(h Handler) {
	if handler != nil {
		panic("rmq.Handle called twice")
	}
	handler = h
}

type witResult = witTypes.Result[[]types.MessageOutcome, types.ListenerError]

// consumeBatch is the export: the WIT context and batch in, the WIT outcomes out.
func consumeBatch(wctx types.ConsumeContext, batch types.Batch) witResult {
	if handler == nil {
		return witTypes.Err[[]types.MessageOutcome](types.ListenerError{Message: "no handler: call rmq.Handle in an init function"})
	}
	ctx := ConsumeContext{
		Mode:              ConsumeMode(wctx.Mode),
		ConsumerGroup:     wctx.ConsumerGroup,
		Queue:             MessageQueue{wctx.Queue.Topic, wctx.Queue.BrokerName, wctx.Queue.QueueId},
		MaxReconsumeTimes: wctx.MaxReconsumeTimes,
	}
	msgs := make([]Message, len(batch.Messages))
	for i := range batch.Messages {
		msgs[i] = Message{&batch.Messages[i], batch.Data}
	}
	outcomes, err := handler(&ctx, msgs)
	if err != nil {
		return witTypes.Err[[]types.MessageOutcome](types.ListenerError{Message: err.Error()})
	}
	out := make([]types.MessageOutcome, len(outcomes))
	for i, o := range outcomes {
		out[i] = toWIT(o)
	}
	return witTypes.Ok[[]types.MessageOutcome, types.ListenerError](out)
}

func toWIT(o Outcome) types.MessageOutcome {
	switch o.kind {
	case OutcomeRetryLater:
		level := witTypes.None[uint8]()
		if o.level != 0 {
			level = witTypes.Some(uint8(o.level))
		}
		return types.MakeMessageOutcomeRetryLater(level)
	case OutcomeDeadLetter:
		reason := witTypes.None[string]()
		if o.reason != "" {
			reason = witTypes.Some(o.reason)
		}
		return types.MakeMessageOutcomeDeadLetter(reason)
	default:
		return types.MakeMessageOutcomeSuccess()
	}
}

func fromWIT(o types.MessageOutcome) Outcome {
	switch o.Tag() {
	case types.MessageOutcome_RetryLater:
		return Outcome{kind: OutcomeRetryLater, level: DelayLevel(o.RetryLater().SomeOr(0))}
	case types.MessageOutcome_DeadLetter:
		return Outcome{kind: OutcomeDeadLetter, reason: o.DeadLetter().SomeOr("")}
	case types.MessageOutcome_Success:
		return Success()
	default:
		panic(fmt.Sprintf("unknown outcome tag %d", o.Tag()))
	}
}
