package rmq_test

import (
	"slices"
	"testing"
	"time"

	"rmqwasm.dev/sdk/rmq"
	"rmqwasm.dev/sdk/rmqtest"
)

// view runs the handler-free part of the SDK: the messages as a handler sees them.
func view(t *testing.T, msgs ...rmqtest.Message) []rmq.Message {
	t.Helper()
	var seen []rmq.Message
	withHandler(t, func(_ *rmq.ConsumeContext, ms []rmq.Message) ([]rmq.Outcome, error) {
		seen = ms
		return nil, nil
	})
	if _, err := rmqtest.Consume(rmqtest.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	return seen
}

func TestMessageFieldsReadThroughTheBatchLayout(t *testing.T) {
	full := rmqtest.NewMessage("orders", `{"kind":"order","id":7}`).
		WithTags("new").WithKey("k1").WithKey("k2").
		WithProperty("zeta", "z").WithProperty("alpha", "a").
		WithMsgID("UNIQ").WithQueueOffset(42).WithReconsumeTimes(2)
	full.OffsetMsgID = "0A000001000000000000ABCD"
	full.BornTimestampMs, full.StoreTimestampMs = 1_700_000_000_123, 1_700_000_000_456
	full.BornHost, full.StoreHost = "10.0.0.2:5000", "10.0.0.1:10911"
	bare := rmqtest.NewMessage("orders", "")
	bare.OffsetMsgID = "OFFSETID"

	ms := view(t, full, bare)
	m := ms[0]
	if m.Topic() != "orders" || m.QueueOffset() != 42 || m.MsgID() != "UNIQ" || m.OffsetMsgID() != "0A000001000000000000ABCD" {
		t.Errorf("ids: %q %d %q %q", m.Topic(), m.QueueOffset(), m.MsgID(), m.OffsetMsgID())
	}
	if got := slices.Collect(m.Keys()); !slices.Equal(got, []string{"k1", "k2"}) || !m.HasKey("k2") || m.HasKey("k") {
		t.Errorf("keys: %v", got)
	}
	if tags, ok := m.Tags(); !ok || tags != "new" || !m.HasTag("new") {
		t.Errorf("tags: %q %v", tags, ok)
	}
	var props []rmq.Property
	for k, v := range m.Properties() {
		props = append(props, rmq.Property{Name: k, Value: v})
	}
	if want := []rmq.Property{{"alpha", "a"}, {"zeta", "z"}}; !slices.Equal(props, want) {
		t.Errorf("properties (sorted by name, as the host sends them): %v", props)
	}
	if v, ok := m.Property("zeta"); !ok || v != "z" {
		t.Errorf("property zeta: %q %v", v, ok)
	}
	var event struct {
		Kind string
		ID   int
	}
	if err := m.BodyJSON(&event); err != nil || event.Kind != "order" || event.ID != 7 {
		t.Errorf("json: %+v %v", event, err)
	}
	if m.BodyText() != `{"kind":"order","id":7}` || !m.BodyContains([]byte("order")) || m.BodyContains([]byte("nope")) {
		t.Errorf("body: %q", m.BodyText())
	}
	if m.ReconsumeTimes() != 2 || !m.IsRedelivery() {
		t.Errorf("reconsume: %d", m.ReconsumeTimes())
	}
	if !m.BornTime().Equal(time.UnixMilli(1_700_000_000_123)) || m.StoreTimestampMs() != 1_700_000_000_456 {
		t.Errorf("times: %v %d", m.BornTime(), m.StoreTimestampMs())
	}
	if m.BornHost() != "10.0.0.2:5000" || m.StoreHost() != "10.0.0.1:10911" {
		t.Errorf("hosts: %q %q", m.BornHost(), m.StoreHost())
	}

	b := ms[1]
	if b.MsgID() != "OFFSETID" {
		t.Errorf("a message without UNIQ_KEY reads the offset id: %q", b.MsgID())
	}
	if _, ok := b.Tags(); ok || b.HasTag("") || slices.Collect(b.Keys()) != nil || len(b.Body()) != 0 || b.IsRedelivery() {
		t.Errorf("bare message: %v", b)
	}
	if err := b.BodyJSON(&event); err == nil {
		t.Error("an empty body is not JSON")
	}
}

func TestForwardToCopiesEverythingButTheTopic(t *testing.T) {
	m := view(t, rmqtest.NewMessage("in", "body").WithTags("T").WithKey("k").WithProperty("p", "v"))[0]
	got := m.ForwardTo("out")
	want := rmq.NewMessage("out", []byte("body")).WithTags("T").WithKey("k").WithProperty("p", "v")
	if got.Topic != want.Topic || got.Tags != want.Tags || !slices.Equal(got.Keys, want.Keys) ||
		!slices.Equal(got.Properties, want.Properties) || string(got.Body) != "body" {
		t.Errorf("forwarded %+v, want %+v", got, want)
	}
}

func TestOutOfRangeSpansReadEmpty(t *testing.T) {
	batch := rmqtest.Batch(rmqtest.NewMessage("t", "x"))
	batch.Messages[0].Body.Len = 1 << 30
	batch.Messages[0].Topic.Start = 1 << 31
	var seen []rmq.Message
	withHandler(t, func(_ *rmq.ConsumeContext, ms []rmq.Message) ([]rmq.Outcome, error) {
		seen = ms
		return nil, nil
	})
	if _, err := rmqtest.ConsumeBatch(rmqtest.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if seen[0].Topic() != "" || seen[0].Body() != nil {
		t.Errorf("out-of-range spans: %q %q", seen[0].Topic(), seen[0].Body())
	}
}
