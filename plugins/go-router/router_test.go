package main

import (
	"slices"
	"testing"

	"rmqwasm.dev/sdk/rmq"
	"rmqwasm.dev/sdk/rmqtest"
)

func setup(t *testing.T, config ...string) {
	t.Helper()
	rmqtest.Reset()
	rmqtest.SetConfig(append([]string{"route.order", "orders", "route.audit", "audits",
		"retry-tag", "later", "delay-level", "5s", "dead-word", "poison"}, config...)...)
}

func TestEachMessageGetsItsOwnOutcome(t *testing.T) {
	setup(t)
	two, _ := rmq.NewDelayLevel(2)
	got, err := rmqtest.Consume(rmqtest.Context(),
		rmqtest.NewMessage("in", `{"kind":"order","id":1}`).WithKey("a"),
		rmqtest.NewMessage("in", "plain text").WithTags("audit"),
		rmqtest.NewMessage("in", `{"kind":"order"}`).WithTags("later"),
		rmqtest.NewMessage("in", `{"kind":"order"}`).WithTags("later").WithReconsumeTimes(1),
		rmqtest.NewMessage("in", `{"kind":"order","note":"poison"}`),
		rmqtest.NewMessage("in", `{"kind":"refund"}`),
	)
	want := []rmq.Outcome{
		rmq.Success(),
		rmq.Success(),
		rmq.RetryAfter(two),
		rmq.Success(),
		rmq.DeadLetter(`go-router: body contains "poison"`),
		rmq.DeadLetter(`go-router: no route for "refund"`),
	}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v\nwant %v", got, err, want)
	}
	sent := rmqtest.Sent()
	if len(sent) != 3 || sent[0].Topic != "orders" || sent[1].Topic != "audits" || sent[2].Topic != "orders" {
		t.Fatalf("sent %+v", sent)
	}
	if !slices.Equal(sent[0].Keys, []string{"a"}) ||
		!slices.Equal(sent[0].Properties, []rmq.Property{{Name: "ROUTE_KEY", Value: "order"}, {Name: "ROUTED_FROM", Value: "in"}, {Name: "ROUTED_AFTER_RETRIES", Value: "0"}}) {
		t.Errorf("routed copy %+v", sent[0])
	}
	if v := sent[2].Properties[2]; v != (rmq.Property{Name: "ROUTED_AFTER_RETRIES", Value: "1"}) {
		t.Errorf("retried then routed: %+v", v)
	}
	logs := rmqtest.Logs()
	if len(logs) != 1 || logs[0].Message != "go-router: 6 from test-topic#0: 3 routed, 1 retried, 2 dead-lettered" {
		t.Errorf("logs %+v", logs)
	}
}

func TestDefaultTopicAndRouteField(t *testing.T) {
	setup(t, "default-topic", "rest", "route-field", "type")
	got, _ := rmqtest.Consume(rmqtest.Context(),
		rmqtest.NewMessage("in", `{"type":"audit"}`), rmqtest.NewMessage("in", `{"kind":"order"}`))
	if !slices.Equal(got, []rmq.Outcome{rmq.Success(), rmq.Success()}) {
		t.Fatal(got)
	}
	if s := rmqtest.Sent(); s[0].Topic != "audits" || s[1].Topic != "rest" {
		t.Errorf("sent %+v", s)
	}
}

func TestSendFailuresRetryAndRefusalsDeadLetter(t *testing.T) {
	setup(t)
	kind := rmq.ProduceTimeout
	rmqtest.OnSend(func(rmq.OutgoingMessage) (rmq.SendReceipt, error) {
		return rmq.SendReceipt{}, &rmq.ProduceError{Kind: kind, Detail: "topic orders not allowed"}
	})
	msg := rmqtest.NewMessage("in", `{"kind":"order"}`).WithMsgID("M1")
	if got, _ := rmqtest.Consume(rmqtest.Context(), msg); got[0] != rmq.Retry() {
		t.Errorf("timeout: %v", got)
	}
	kind = rmq.ProduceDenied
	got, _ := rmqtest.Consume(rmqtest.Context(), msg)
	if got[0] != rmq.DeadLetter("go-router: send refused: produce failed: denied by host: topic orders not allowed") {
		t.Errorf("denied: %v", got)
	}
}

func TestABadConfigFailsTheBatch(t *testing.T) {
	setup(t, "delay-level", "3s")
	if _, err := rmqtest.Consume(rmqtest.Context(), rmqtest.NewMessage("in", "x")); err == nil {
		t.Error("delay-level 3s accepted")
	}
	setup(t, "retry-attempts", "-1")
	if _, err := rmqtest.Consume(rmqtest.Context(), rmqtest.NewMessage("in", "x")); err == nil {
		t.Error("retry-attempts -1 accepted")
	}
}
