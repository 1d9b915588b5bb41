//go:build !wasip1

package rmq

import (
	"errors"
	"fmt"

	"rmqwasm.dev/sdk/internal/fakehost"
	types "rmqwasm.dev/sdk/internal/wit/imports/rmq_listener_types"
)

// On a native GOOS the host is package fakehost (driven by package rmqtest); the export runs the
// way the Wasm glue runs it, outcomes included: through the WIT types.
func init() {
	fakehost.SetHandler = func(h any) { handler, _ = h.(Handler) }
	fakehost.Consume = func(ctx types.ConsumeContext, batch types.Batch) (any, error) {
		r := consumeBatch(ctx, batch)
		if r.IsErr() {
			return nil, errors.New(r.Err().Message)
		}
		outcomes := make([]Outcome, len(r.Ok()))
		for i, o := range r.Ok() {
			outcomes[i] = fromWIT(o)
		}
		return outcomes, nil
	}
}

func hostLog(level Level, message string) {
	fakehost.With(func(s *fakehost.State) struct{} {
		s.Logs = append(s.Logs, fakehost.Line{Level: uint8(level), Message: message})
		return struct{}{}
	})
}

func hostConfigGet(key string) (string, bool) {
	for _, p := range hostConfigAll() {
		if p.Name == key {
			return p.Value, true
		}
	}
	return "", false
}

func hostConfigAll() []Property {
	return fakehost.With(func(s *fakehost.State) []Property {
		out := make([]Property, len(s.Config))
		for i, kv := range s.Config {
			out[i] = Property{kv[0], kv[1]}
		}
		return out
	})
}

func hostSend(msg OutgoingMessage) (SendReceipt, error) {
	hook := fakehost.With(func(s *fakehost.State) func(any) (any, error) { return s.OnSend })
	var receipt SendReceipt
	if hook != nil {
		r, err := hook(msg)
		if err != nil {
			var pe *ProduceError
			if !errors.As(err, &pe) {
				pe = &ProduceError{ProduceFailed, err.Error()}
			}
			return SendReceipt{}, pe
		}
		receipt = r.(SendReceipt)
	}
	fakehost.With(func(s *fakehost.State) struct{} {
		if hook == nil {
			offset := uint64(len(s.Sent))
			receipt = SendReceipt{
				MsgID:       fmt.Sprintf("FAKE%016X", offset),
				Queue:       MessageQueue{Topic: msg.Topic, BrokerName: "fake-broker"},
				QueueOffset: offset,
			}
		}
		s.Sent = append(s.Sent, msg)
		return struct{}{}
	})
	return receipt, nil
}
