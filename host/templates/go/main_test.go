package main

import (
	"slices"
	"testing"

	"rmqwasm.dev/sdk/rmq"
	"rmqwasm.dev/sdk/rmqtest"
)

func TestOutcomes(t *testing.T) {
	rmqtest.Reset()
	rmqtest.SetConfig("retry-tag", "later")
	got, err := rmqtest.Consume(rmqtest.Context(),
		rmqtest.NewMessage("in", "hello"),
		rmqtest.NewMessage("in", ""),
		rmqtest.NewMessage("in", "again").WithTags("later"),
		rmqtest.NewMessage("in", "again").WithTags("later").WithReconsumeTimes(1),
	)
	want := []rmq.Outcome{rmq.Success(), rmq.DeadLetter("empty body"), rmq.Retry(), rmq.Success()}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
}
