package rmq_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"rmqwasm.dev/sdk/rmq"
	"rmqwasm.dev/sdk/rmqtest"
)

// withHandler installs h for one test (rmq.Handle panics on a second handler, as in a plugin).
func withHandler(t *testing.T, h rmq.Handler) {
	t.Helper()
	rmqtest.Reset()
	rmqtest.SetHandler(h)
	t.Cleanup(func() { rmqtest.SetHandler(nil) })
}

func TestParseDelayLevel(t *testing.T) {
	for _, c := range []struct {
		in   string
		want rmq.DelayLevel
		err  bool
	}{
		{"1", 1, false}, {" 18 ", 18, false}, {"30s", 4, false}, {"1m", 5, false}, {"2h", 18, false},
		{"0", 0, true}, {"19", 0, true}, {"3s", 0, true}, {"", 0, true},
	} {
		got, err := rmq.ParseDelayLevel(c.in)
		if got != c.want || (err != nil) != c.err {
			t.Errorf("ParseDelayLevel(%q) = %d, %v", c.in, got, err)
		}
	}
	if rmq.DelayLevel(4).DefaultDelay() != 30*time.Second || rmq.DelayLevel(18).DefaultDelay() != 2*time.Hour {
		t.Error("default table")
	}
	if _, err := rmq.NewDelayLevel(0); err == nil {
		t.Error("level 0 accepted")
	}
}

func TestOutcomesTravelThroughTheWITTypes(t *testing.T) {
	four, _ := rmq.NewDelayLevel(4)
	sent := []rmq.Outcome{rmq.Success(), rmq.Retry(), rmq.RetryAfter(four), rmq.DeadLetter("bad"), rmq.DeadLetter("")}
	withHandler(t, func(_ *rmq.ConsumeContext, ms []rmq.Message) ([]rmq.Outcome, error) {
		return sent, nil
	})
	msgs := make([]rmqtest.Message, len(sent))
	got, err := rmqtest.Consume(rmqtest.Context(), msgs...)
	if err != nil || !slices.Equal(got, sent) {
		t.Fatalf("got %v, %v", got, err)
	}
	var names []string
	for _, o := range got {
		names = append(names, o.String())
	}
	if s := strings.Join(names, " "); s != `success retry-later retry-later(4) dead-letter("bad") dead-letter` {
		t.Error(s)
	}
}

func TestMissingOutcomesAreRetriesAndExtraOnesDropped(t *testing.T) {
	n := 1
	withHandler(t, func(_ *rmq.ConsumeContext, ms []rmq.Message) ([]rmq.Outcome, error) {
		return slices.Repeat([]rmq.Outcome{rmq.Success()}, n), nil
	})
	two := []rmqtest.Message{rmqtest.NewMessage("t", "a"), rmqtest.NewMessage("t", "b")}
	if got, _ := rmqtest.Consume(rmqtest.Context(), two...); !slices.Equal(got, []rmq.Outcome{rmq.Success(), rmq.Retry()}) {
		t.Errorf("short: %v", got)
	}
	n = 3
	if got, _ := rmqtest.Consume(rmqtest.Context(), two...); len(got) != 2 {
		t.Errorf("long: %v", got)
	}
}

func TestAHandlerErrorFailsTheBatch(t *testing.T) {
	withHandler(t, func(*rmq.ConsumeContext, []rmq.Message) ([]rmq.Outcome, error) {
		return nil, errors.New("database down")
	})
	if _, err := rmqtest.Consume(rmqtest.Context(), rmqtest.NewMessage("t", "a")); err == nil || err.Error() != "database down" {
		t.Errorf("err = %v", err)
	}
}

func TestContextReachesTheHandler(t *testing.T) {
	var got rmq.ConsumeContext
	withHandler(t, func(ctx *rmq.ConsumeContext, _ []rmq.Message) ([]rmq.Outcome, error) {
		got = *ctx
		return nil, nil
	})
	want := rmq.ConsumeContext{Mode: rmq.Orderly, ConsumerGroup: "g", Queue: rmq.MessageQueue{"%RETRY%g", "b", 3}, MaxReconsumeTimes: 2}
	if _, err := rmqtest.Consume(want); err != nil || got != want || !got.IsOrderly() {
		t.Errorf("got %+v", got)
	}
}

func TestConfigLogAndProducerTalkToTheHost(t *testing.T) {
	withHandler(t, func(_ *rmq.ConsumeContext, ms []rmq.Message) ([]rmq.Outcome, error) {
		topic, err := rmq.Config.Require("out")
		if err != nil {
			return nil, err
		}
		rmq.Log.Warnf("forwarding %d to %s", len(ms), topic)
		for _, m := range ms {
			if _, err := rmq.Producer.Send(m.ForwardTo(topic)); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
	if _, err := rmqtest.Consume(rmqtest.Context(), rmqtest.NewMessage("t", "a")); err == nil || err.Error() != "config key out is not set" {
		t.Errorf("missing config: %v", err)
	}
	rmqtest.SetConfig("out", "dest", "a", "1")
	if all := rmq.Config.All(); !slices.Equal(all, []rmq.Property{{"a", "1"}, {"out", "dest"}}) || rmq.Config.Or("x", "d") != "d" {
		t.Errorf("config: %v", all)
	}
	if _, err := rmqtest.Consume(rmqtest.Context(), rmqtest.NewMessage("t", "a")); err != nil {
		t.Fatal(err)
	}
	if sent := rmqtest.Sent(); len(sent) != 1 || sent[0].Topic != "dest" || string(sent[0].Body) != "a" {
		t.Errorf("sent: %+v", sent)
	}
	if logs := rmqtest.Logs(); len(logs) != 1 || logs[0] != (rmqtest.LogLine{Level: rmq.LevelWarn, Message: "forwarding 1 to dest"}) {
		t.Errorf("logs: %+v", logs)
	}
	rmqtest.OnSend(func(m rmq.OutgoingMessage) (rmq.SendReceipt, error) {
		return rmq.SendReceipt{}, &rmq.ProduceError{Kind: rmq.ProduceDenied, Detail: "topic " + m.Topic + " not allowed"}
	})
	// Across the export a handler's error is only its text, as on the host.
	_, err := rmqtest.Consume(rmqtest.Context(), rmqtest.NewMessage("t", "b"))
	if err == nil || err.Error() != "produce failed: denied by host: topic dest not allowed" {
		t.Errorf("denied send: %v", err)
	}
	_, err = rmq.NewMessage("x", nil).Send()
	var pe *rmq.ProduceError
	if !errors.As(err, &pe) || pe.Kind != rmq.ProduceDenied {
		t.Errorf("a send's error is a *ProduceError: %#v", err)
	}
	if len(rmqtest.Sent()) != 1 {
		t.Error("a refused send was recorded")
	}
}
