//go:build !wasip1

// Package rmqtest runs a listener natively, for `go test`: it lays test messages out as the host
// lays out a batch (fixed-size records whose text and body are spans of one byte buffer, see
// wit/listener.wit; the host builds the same in host/src/wasm/convert.rs), calls the handler
// registered with rmq.Handle through the same export path the Wasm glue uses, and plays the host
// for rmq.Log, rmq.Config and rmq.Producer.
//
//	func TestRouter(t *testing.T) {
//		rmqtest.Reset()
//		rmqtest.SetConfig("route.order", "orders")
//		out, err := rmqtest.Consume(rmqtest.Context(), rmqtest.NewMessage("in", `{"kind":"order"}`))
//		...
//	}
//
// The fake host is one per process: tests that use it must not run in parallel.
package rmqtest

import (
	"maps"
	"slices"
	"strings"

	"rmqwasm.dev/sdk/internal/fakehost"
	types "rmqwasm.dev/sdk/internal/wit/imports/rmq_listener_types"
	witTypes "rmqwasm.dev/sdk/internal/witpkg/types"
	"rmqwasm.dev/sdk/rmq"
)

// Message is a message to hand a listener: what a producer sent (Sent) plus what the broker and
// the consumer add.
type Message struct {
	// Topic, tags, keys, user properties (the host sends them sorted by name) and body.
	Sent        rmq.OutgoingMessage
	QueueOffset uint64
	// UNIQ_KEY; empty: the offset msg id stands in, as on the host.
	MsgID            string
	OffsetMsgID      string
	BornTimestampMs  uint64
	StoreTimestampMs uint64
	BornHost         string
	StoreHost        string
	ReconsumeTimes   uint32
}

// NewMessage is a message on topic with body; every other field empty or zero.
func NewMessage(topic, body string) Message {
	return Message{Sent: rmq.NewMessage(topic, []byte(body))}
}

// WithTags sets the tag.
func (m Message) WithTags(tags string) Message { m.Sent = m.Sent.WithTags(tags); return m }

// WithKey adds a key.
func (m Message) WithKey(key string) Message { m.Sent = m.Sent.WithKey(key); return m }

// WithProperty sets a user property.
func (m Message) WithProperty(name, value string) Message {
	m.Sent = m.Sent.WithProperty(name, value)
	return m
}

// WithMsgID sets the message id (UNIQ_KEY).
func (m Message) WithMsgID(id string) Message { m.MsgID = id; return m }

// WithQueueOffset sets the queue offset.
func (m Message) WithQueueOffset(offset uint64) Message { m.QueueOffset = offset; return m }

// WithReconsumeTimes sets how often the message was delivered before.
func (m Message) WithReconsumeTimes(n uint32) Message { m.ReconsumeTimes = n; return m }

// Context is a concurrent consumer's context: group "test-group", queue test-topic@fake-broker#0,
// 16 reconsume times (RocketMQ's default).
func Context() rmq.ConsumeContext {
	return rmq.ConsumeContext{
		ConsumerGroup:     "test-group",
		Queue:             rmq.MessageQueue{Topic: "test-topic", BrokerName: "fake-broker"},
		MaxReconsumeTimes: 16,
	}
}

// Batch lays msgs out as the host does: one record per message, every text and body appended to
// one buffer, the message id sharing the offset id's bytes when it has none of its own.
func Batch(msgs ...Message) types.Batch {
	var data []byte
	span := func(s string) types.Span {
		start := uint32(len(data))
		data = append(data, s...)
		return types.Span{Start: start, Len: uint32(len(s))}
	}
	records := make([]types.Message, len(msgs))
	for i, m := range msgs {
		topic := span(m.Sent.Topic)
		offsetMsgID := span(m.OffsetMsgID)
		msgID := offsetMsgID
		if m.MsgID != "" {
			msgID = span(m.MsgID)
		}
		props := slices.Clone(m.Sent.Properties)
		slices.SortStableFunc(props, func(a, b rmq.Property) int { return strings.Compare(a.Name, b.Name) })
		var encoded strings.Builder
		for _, p := range props {
			encoded.WriteString(p.Name + "\x01" + p.Value + "\x02")
		}
		tags := witTypes.None[types.Span]()
		if m.Sent.Tags != "" {
			tags = witTypes.Some(span(m.Sent.Tags))
		}
		records[i] = types.Message{
			QueueOffset:    m.QueueOffset,
			BornTimestamp:  m.BornTimestampMs,
			StoreTimestamp: m.StoreTimestampMs,
			ReconsumeTimes: m.ReconsumeTimes,
			Topic:          topic,
			MsgId:          msgID,
			OffsetMsgId:    offsetMsgID,
			Keys:           span(strings.Join(m.Sent.Keys, " ")),
			Tags:           tags,
			Properties:     span(encoded.String()),
			Body:           span(string(m.Sent.Body)),
			BornHost:       span(m.BornHost),
			StoreHost:      span(m.StoreHost),
		}
	}
	return types.Batch{Messages: records, Data: data}
}

// Consume runs the registered handler on msgs the way the host does: laid out as a batch, the
// outcomes back through the WIT types, a short list padded with rmq.Retry() and extra outcomes
// dropped (Java's ackIndex).
func Consume(ctx rmq.ConsumeContext, msgs ...Message) ([]rmq.Outcome, error) {
	return ConsumeBatch(ctx, Batch(msgs...))
}

// Reset clears config, logs, sent messages and the send hook.
func Reset() { fakehost.Reset() }

// SetConfig replaces the listener's config with the pairs key1, value1, key2, value2, ... (a
// key given twice keeps its last value).
func SetConfig(pairs ...string) {
	if len(pairs)%2 != 0 {
		panic("rmqtest.SetConfig: odd number of arguments")
	}
	byKey := map[string]string{}
	for i := 0; i < len(pairs); i += 2 {
		byKey[pairs[i]] = pairs[i+1]
	}
	var config [][2]string
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		config = append(config, [2]string{k, byKey[k]})
	}
	fakehost.With(func(s *fakehost.State) struct{} { s.Config = config; return struct{}{} })
}

// OnSend decides the result of every later rmq.Producer.Send (by default every send succeeds
// with a made-up receipt). Return a *rmq.ProduceError to fail a send. Successful sends are
// recorded in Sent.
func OnSend(hook func(rmq.OutgoingMessage) (rmq.SendReceipt, error)) {
	fakehost.With(func(s *fakehost.State) struct{} {
		s.OnSend = func(m any) (any, error) { return hook(m.(rmq.OutgoingMessage)) }
		return struct{}{}
	})
}

// LogLine is one line the listener logged.
type LogLine struct {
	Level   rmq.Level
	Message string
}

// Logs are the lines logged so far, oldest first.
func Logs() []LogLine {
	return fakehost.With(func(s *fakehost.State) []LogLine {
		out := make([]LogLine, len(s.Logs))
		for i, l := range s.Logs {
			out[i] = LogLine{rmq.Level(l.Level), l.Message}
		}
		return out
	})
}

// Sent are the messages sent successfully so far, oldest first.
func Sent() []rmq.OutgoingMessage {
	return fakehost.With(func(s *fakehost.State) []rmq.OutgoingMessage {
		out := make([]rmq.OutgoingMessage, len(s.Sent))
		for i, m := range s.Sent {
			out[i] = m.(rmq.OutgoingMessage)
		}
		return out
	})
}

// ConsumeBatch is Consume on a batch built (or doctored) by hand.
func ConsumeBatch(ctx rmq.ConsumeContext, batch types.Batch) ([]rmq.Outcome, error) {
	wctx := types.ConsumeContext{
		Mode:              uint8(ctx.Mode),
		ConsumerGroup:     ctx.ConsumerGroup,
		Queue:             types.MessageQueue{Topic: ctx.Queue.Topic, BrokerName: ctx.Queue.BrokerName, QueueId: ctx.Queue.QueueID},
		MaxReconsumeTimes: ctx.MaxReconsumeTimes,
	}
	got, err := fakehost.Consume(wctx, batch)
	if err != nil {
		return nil, err
	}
	outcomes := got.([]rmq.Outcome)
	for len(outcomes) < len(batch.Messages) {
		outcomes = append(outcomes, rmq.Retry())
	}
	return outcomes[:len(batch.Messages)], nil
}

// SetHandler replaces the registered handler (nil: none), for tests of several handlers in one
// package; a plugin registers its one handler with rmq.Handle.
func SetHandler(h rmq.Handler) { fakehost.SetHandler(h) }
