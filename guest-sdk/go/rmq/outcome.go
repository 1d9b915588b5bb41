package rmq

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DelayLevel is a RocketMQ delay level, 1..18, with the broker's default table
// 1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h.
type DelayLevel uint8

var delayTable = [...]struct {
	label string
	delay time.Duration
}{
	{"1s", time.Second}, {"5s", 5 * time.Second}, {"10s", 10 * time.Second}, {"30s", 30 * time.Second},
	{"1m", time.Minute}, {"2m", 2 * time.Minute}, {"3m", 3 * time.Minute}, {"4m", 4 * time.Minute},
	{"5m", 5 * time.Minute}, {"6m", 6 * time.Minute}, {"7m", 7 * time.Minute}, {"8m", 8 * time.Minute},
	{"9m", 9 * time.Minute}, {"10m", 10 * time.Minute}, {"20m", 20 * time.Minute}, {"30m", 30 * time.Minute},
	{"1h", time.Hour}, {"2h", 2 * time.Hour},
}

// NewDelayLevel is level n; an error unless 1 <= n <= 18.
func NewDelayLevel(n int) (DelayLevel, error) {
	if n < 1 || n > len(delayTable) {
		return 0, fmt.Errorf("invalid delay level %d: expected 1..=18", n)
	}
	return DelayLevel(n), nil
}

// ParseDelayLevel parses a level number ("3") or a label of the default table ("10s", "1m", "2h").
func ParseDelayLevel(s string) (DelayLevel, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= len(delayTable) {
		return DelayLevel(n), nil
	}
	for i, d := range delayTable {
		if d.label == s {
			return DelayLevel(i + 1), nil
		}
	}
	return 0, fmt.Errorf("invalid delay level %q: expected 1..=18 or one of 1s 5s 10s 30s 1m .. 10m 20m 30m 1h 2h", s)
}

// DefaultDelay is the level's delay in the broker's default table.
func (l DelayLevel) DefaultDelay() time.Duration {
	if l < 1 || int(l) > len(delayTable) {
		return 0
	}
	return delayTable[l-1].delay
}

// OutcomeKind says which of the three outcomes an Outcome is.
type OutcomeKind uint8

const (
	// OutcomeSuccess: consumed; the offset may be committed.
	OutcomeSuccess OutcomeKind = iota
	// OutcomeRetryLater: deliver again later (RECONSUME_LATER).
	OutcomeRetryLater
	// OutcomeDeadLetter: send straight to %DLQ%<group>; counts as consumed.
	OutcomeDeadLetter
)

// Outcome is what to do with one message: a generalised ackIndex. The zero value is Success.
type Outcome struct {
	kind   OutcomeKind
	level  DelayLevel // 0: the broker's default (3 + reconsume times)
	reason string     // "": no reason recorded
}

// Success: the message is consumed.
func Success() Outcome { return Outcome{} }

// Retry: deliver the message again at the broker's default delay (level 3 + reconsume times).
func Retry() Outcome { return Outcome{kind: OutcomeRetryLater} }

// RetryAfter: deliver the message again at delay level (ignored by orderly consumers, which
// suspend the queue instead).
func RetryAfter(level DelayLevel) Outcome { return Outcome{kind: OutcomeRetryLater, level: level} }

// DeadLetter: send the message to %DLQ%<group>, recording reason (if not empty) in the DLQ copy's
// properties.
func DeadLetter(reason string) Outcome { return Outcome{kind: OutcomeDeadLetter, reason: reason} }

// Kind is which outcome this is.
func (o Outcome) Kind() OutcomeKind { return o.kind }

// IsSuccess reports whether this is Success.
func (o Outcome) IsSuccess() bool { return o.kind == OutcomeSuccess }

// Level is a retry's delay level; ok is false for the broker's default (and for other outcomes).
func (o Outcome) Level() (level DelayLevel, ok bool) { return o.level, o.level != 0 }

// Reason is a dead letter's reason ("" when none).
func (o Outcome) Reason() string { return o.reason }

// String is the outcome as the host's logs spell it.
func (o Outcome) String() string {
	switch {
	case o.kind == OutcomeSuccess:
		return "success"
	case o.kind == OutcomeRetryLater && o.level == 0:
		return "retry-later"
	case o.kind == OutcomeRetryLater:
		return fmt.Sprintf("retry-later(%d)", o.level)
	case o.reason == "":
		return "dead-letter"
	default:
		return fmt.Sprintf("dead-letter(%q)", o.reason)
	}
}
