package rmq

import (
	"bytes"
	"encoding/json"
	"iter"
	"strings"
	"time"
	"unsafe"

	types "rmqwasm.dev/sdk/internal/wit/imports/rmq_listener_types"
)

// Message is a consumed message, what a Java listener sees in MessageExt, read in place: a view
// of one fixed-size record of the batch and the batch's byte buffer (wit/listener.wit), so
// reading a field copies nothing and a listener that looks only at tags never touches bodies.
// Out-of-range spans (a host bug) read as empty, never a panic.
type Message struct {
	rec  *types.Message
	data []byte
}

func (m Message) bytes(s types.Span) []byte {
	end := uint64(s.Start) + uint64(s.Len)
	if end > uint64(len(m.data)) {
		return nil
	}
	return m.data[s.Start:end:end]
}

// text is the span as a string sharing the batch's bytes (the host checked they are UTF-8).
func (m Message) text(s types.Span) string {
	b := m.bytes(s)
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// Topic is the message's topic (the original one for redelivered messages).
func (m Message) Topic() string { return m.text(m.rec.Topic) }

// QueueOffset is the offset of the message in the batch's queue (ConsumeContext.Queue).
func (m Message) QueueOffset() uint64 { return m.rec.QueueOffset }

// MsgID is the client-generated unique id (UNIQ_KEY), or OffsetMsgID when the message has none.
func (m Message) MsgID() string { return m.text(m.rec.MsgId) }

// OffsetMsgID is the broker-generated id (store host + commit-log offset).
func (m Message) OffsetMsgID() string { return m.text(m.rec.OffsetMsgId) }

// Keys are the message's keys (RocketMQ KEYS, split on spaces).
func (m Message) Keys() iter.Seq[string] {
	return func(yield func(string) bool) {
		for k := range strings.SplitSeq(m.text(m.rec.Keys), " ") {
			if k != "" && !yield(k) {
				return
			}
		}
	}
}

// HasKey reports whether one of the message's keys is key.
func (m Message) HasKey(key string) bool {
	for k := range m.Keys() {
		if k == key {
			return true
		}
	}
	return false
}

// Tags is the message's tag; ok is false when it has none.
func (m Message) Tags() (tags string, ok bool) {
	if m.rec.Tags.IsNone() {
		return "", false
	}
	return m.text(m.rec.Tags.Some()), true
}

// HasTag reports whether the message's tag is tag.
func (m Message) HasTag(tag string) bool {
	t, ok := m.Tags()
	return ok && t == tag
}

// Properties are the user properties, sorted by name (RocketMQ's system properties are the
// other fields of Message).
func (m Message) Properties() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for pair := range strings.SplitSeq(m.text(m.rec.Properties), "\x02") {
			name, value, ok := strings.Cut(pair, "\x01")
			if ok && !yield(name, value) {
				return
			}
		}
	}
}

// Property is the value of the user property name; ok is false when the message has none.
func (m Message) Property(name string) (value string, ok bool) {
	for k, v := range m.Properties() {
		if k == name {
			return v, true
		}
	}
	return "", false
}

// Body is the payload. It shares memory with the batch: do not modify it.
func (m Message) Body() []byte { return m.bytes(m.rec.Body) }

// BodyText is the body as a string sharing the batch's bytes (not checked for UTF-8).
func (m Message) BodyText() string { return m.text(m.rec.Body) }

// BodyContains reports whether the body contains needle as bytes.
func (m Message) BodyContains(needle []byte) bool { return bytes.Contains(m.Body(), needle) }

// BodyJSON parses the body as JSON into v (encoding/json.Unmarshal).
func (m Message) BodyJSON(v any) error { return json.Unmarshal(m.Body(), v) }

// ReconsumeTimes is the number of deliveries before this one (0 on first delivery).
func (m Message) ReconsumeTimes() uint32 { return m.rec.ReconsumeTimes }

// IsRedelivery reports whether the message was delivered before.
func (m Message) IsRedelivery() bool { return m.rec.ReconsumeTimes > 0 }

// BornTimestampMs is when the producer sent the message, ms since the Unix epoch (its clock).
func (m Message) BornTimestampMs() uint64 { return m.rec.BornTimestamp }

// StoreTimestampMs is when the broker stored the message, ms since the Unix epoch (its clock).
func (m Message) StoreTimestampMs() uint64 { return m.rec.StoreTimestamp }

// BornTime is BornTimestampMs as a time.
func (m Message) BornTime() time.Time { return time.UnixMilli(int64(m.rec.BornTimestamp)) }

// StoreTime is StoreTimestampMs as a time.
func (m Message) StoreTime() time.Time { return time.UnixMilli(int64(m.rec.StoreTimestamp)) }

// BornHost is ip:port of the producer.
func (m Message) BornHost() string { return m.text(m.rec.BornHost) }

// StoreHost is ip:port of the broker that stored the message.
func (m Message) StoreHost() string { return m.text(m.rec.StoreHost) }

// ForwardTo is an outgoing copy of the message for topic: same tags, keys, properties and body
// (copied, so it outlives the batch).
func (m Message) ForwardTo(topic string) OutgoingMessage {
	out := OutgoingMessage{Topic: topic, Body: bytes.Clone(m.Body())}
	if t, ok := m.Tags(); ok {
		out.Tags = strings.Clone(t)
	}
	for k := range m.Keys() {
		out.Keys = append(out.Keys, strings.Clone(k))
	}
	for k, v := range m.Properties() {
		out.Properties = append(out.Properties, Property{strings.Clone(k), strings.Clone(v)})
	}
	return out
}
