package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"rmqwasm.dev/sdk/rmq"
)

// settings is the listener's config, read once per batch.
type settings struct {
	routes        map[string]string
	routeField    string
	defaultTopic  string
	retryTag      string
	retryAttempts uint32
	delay         rmq.DelayLevel // 0: the broker's default
	deadWord      string
}

func readSettings() (settings, error) {
	s := settings{routes: map[string]string{}, routeField: "kind", retryAttempts: 1}
	for _, p := range rmq.Config.All() {
		if key, ok := strings.CutPrefix(p.Name, "route."); ok {
			s.routes[key] = p.Value
		}
	}
	s.routeField = rmq.Config.Or("route-field", s.routeField)
	s.defaultTopic = rmq.Config.Or("default-topic", "")
	s.retryTag = rmq.Config.Or("retry-tag", "")
	s.deadWord = rmq.Config.Or("dead-word", "")
	if v, ok := rmq.Config.Get("retry-attempts"); ok {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return s, fmt.Errorf("go-router: config retry-attempts = %q is not a count", v)
		}
		s.retryAttempts = uint32(n)
	}
	if v, ok := rmq.Config.Get("delay-level"); ok {
		level, err := rmq.ParseDelayLevel(v)
		if err != nil {
			return s, fmt.Errorf("go-router: config delay-level: %w", err)
		}
		s.delay = level
	}
	return s, nil
}

func consume(ctx *rmq.ConsumeContext, msgs []rmq.Message) ([]rmq.Outcome, error) {
	s, err := readSettings()
	if err != nil {
		return nil, err
	}
	out := make([]rmq.Outcome, len(msgs))
	var routed, retried, dead int
	for i, m := range msgs {
		out[i] = s.decide(m)
		switch out[i].Kind() {
		case rmq.OutcomeSuccess:
			routed++
		case rmq.OutcomeRetryLater:
			retried++
		default:
			dead++
		}
	}
	rmq.Log.Infof("go-router: %d from %s#%d: %d routed, %d retried, %d dead-lettered",
		len(msgs), ctx.Queue.Topic, ctx.Queue.QueueID, routed, retried, dead)
	return out, nil
}

func (s *settings) decide(m rmq.Message) rmq.Outcome {
	if s.deadWord != "" && m.BodyContains([]byte(s.deadWord)) {
		return rmq.DeadLetter(fmt.Sprintf("go-router: body contains %q", s.deadWord))
	}
	if s.retryTag != "" && m.HasTag(s.retryTag) && m.ReconsumeTimes() < s.retryAttempts {
		return s.retry()
	}
	key := s.routeKey(m)
	topic, ok := s.routes[key]
	if !ok {
		topic = s.defaultTopic
	}
	if topic == "" {
		return rmq.DeadLetter(fmt.Sprintf("go-router: no route for %q", key))
	}
	copy := m.ForwardTo(topic).
		WithProperty("ROUTE_KEY", key).
		WithProperty("ROUTED_FROM", m.Topic()).
		WithProperty("ROUTED_AFTER_RETRIES", strconv.FormatUint(uint64(m.ReconsumeTimes()), 10))
	if _, err := rmq.Producer.Send(copy); err != nil {
		var pe *rmq.ProduceError
		if errors.As(err, &pe) && (pe.Kind == rmq.ProduceTimeout || pe.Kind == rmq.ProduceFailed) {
			rmq.Log.Warnf("go-router: send of %s failed (%v), retrying", m.MsgID(), err)
			return rmq.Retry()
		}
		return rmq.DeadLetter("go-router: send refused: " + err.Error())
	}
	return rmq.Success()
}

func (s *settings) retry() rmq.Outcome {
	if s.delay == 0 {
		return rmq.Retry()
	}
	return rmq.RetryAfter(s.delay)
}

// routeKey is the body's route field when the body is a JSON object with that field as a string
// or number, else the message's tag ("" when it has none).
func (s *settings) routeKey(m rmq.Message) string {
	var event map[string]json.RawMessage
	if m.BodyJSON(&event) == nil {
		if raw, ok := event[s.routeField]; ok {
			var text string
			if json.Unmarshal(raw, &text) == nil {
				return text
			}
			return string(raw)
		}
	}
	tags, _ := m.Tags()
	return tags
}
