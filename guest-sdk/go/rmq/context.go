package rmq

// MessageQueue is RocketMQ's MessageQueue: the topic, broker and queue a message lives in.
type MessageQueue struct {
	Topic      string
	BrokerName string
	QueueID    uint32
}

// ConsumeMode says how the host consumes the queue a batch came from.
type ConsumeMode uint8

const (
	// Concurrently: messages of a batch are independent; every outcome is honoured on its own.
	Concurrently ConsumeMode = iota
	// Orderly: the queue is locked to this consumer; outcomes apply in order, and the first
	// retry suspends the queue and redelivers that message and all after it.
	Orderly
)

// ConsumeContext is RocketMQ's ConsumeConcurrentlyContext / ConsumeOrderlyContext: what the host
// says about a call.
type ConsumeContext struct {
	Mode          ConsumeMode
	ConsumerGroup string
	// The queue every message of the batch comes from (for redeliveries %RETRY%<group>).
	Queue MessageQueue
	// After this many redeliveries a retried message goes to %DLQ%<group> instead.
	MaxReconsumeTimes uint32
}

// IsOrderly reports whether the batch comes from an orderly consumer.
func (c *ConsumeContext) IsOrderly() bool { return c.Mode == Orderly }

// IsLastAttempt reports whether retrying m would send it to the dead-letter queue instead.
func (c *ConsumeContext) IsLastAttempt(m Message) bool {
	return m.ReconsumeTimes() >= c.MaxReconsumeTimes
}
