package rmq

import "fmt"

// Property is one user property of a message.
type Property struct {
	Name, Value string
}

// OutgoingMessage is a message to send through the host's producer.
type OutgoingMessage struct {
	Topic string
	// Tags: "" for none.
	Tags string
	// Joined with spaces into the KEYS property.
	Keys []string
	// User properties; names reserved by RocketMQ are rejected (ProduceInvalid).
	Properties []Property
	Body       []byte
}

// NewMessage is a message for topic with body.
func NewMessage(topic string, body []byte) OutgoingMessage {
	return OutgoingMessage{Topic: topic, Body: body}
}

// WithTags sets the tag.
func (m OutgoingMessage) WithTags(tags string) OutgoingMessage {
	m.Tags = tags
	return m
}

// WithKey adds a key.
func (m OutgoingMessage) WithKey(key string) OutgoingMessage {
	m.Keys = append(m.Keys[:len(m.Keys):len(m.Keys)], key)
	return m
}

// WithProperty sets a user property (replacing an earlier one with the same name).
func (m OutgoingMessage) WithProperty(name, value string) OutgoingMessage {
	props := append([]Property(nil), m.Properties...)
	for i := range props {
		if props[i].Name == name {
			props[i].Value = value
			m.Properties = props
			return m
		}
	}
	m.Properties = append(props, Property{name, value})
	return m
}

// Send sends the message through the host's producer (Producer.Send).
func (m OutgoingMessage) Send() (SendReceipt, error) { return Producer.Send(m) }

// SendStatus is RocketMQ's SendStatus.
type SendStatus uint8

const (
	SendOK SendStatus = iota
	SendFlushDiskTimeout
	SendFlushSlaveTimeout
	SendSlaveNotAvailable
)

// SendReceipt is what the broker answered to a send.
type SendReceipt struct {
	Status SendStatus
	// The unique id (UNIQ_KEY) the host assigned.
	MsgID string
	// The broker-generated id.
	OffsetMsgID string
	Queue       MessageQueue
	QueueOffset uint64
}

// ProduceErrorKind says why a send failed.
type ProduceErrorKind uint8

const (
	// ProduceInvalid: the message itself is unacceptable (empty topic, reserved property, body
	// too large).
	ProduceInvalid ProduceErrorKind = iota
	// ProduceDenied: the host refused (topic not allowed for this listener, or its send quota for
	// this call is used up).
	ProduceDenied
	// ProduceTimeout: no answer from the broker within the host's send timeout.
	ProduceTimeout
	// ProduceFailed: the broker or the network failed.
	ProduceFailed
)

// ProduceError is a failed send; Producer.Send returns it as its error.
type ProduceError struct {
	Kind   ProduceErrorKind
	Detail string
}

func (e *ProduceError) Error() string {
	switch e.Kind {
	case ProduceInvalid:
		return "invalid message: " + e.Detail
	case ProduceDenied:
		return "denied by host: " + e.Detail
	case ProduceTimeout:
		return "timed out"
	default:
		return "send failed: " + e.Detail
	}
}

type producer struct{}

// Producer sends messages through the host's producer (bounded per call; every send counted).
var Producer producer

// Send sends msg; the error is a *ProduceError.
func (producer) Send(msg OutgoingMessage) (SendReceipt, error) {
	r, err := hostSend(msg)
	if err != nil {
		return SendReceipt{}, fmt.Errorf("produce failed: %w", err)
	}
	return r, nil
}
