package main

import (
	"slices"
	"testing"

	"rmqwasm.dev/sdk/rmq"
	"rmqwasm.dev/sdk/rmqtest"
)

func TestOutcomes(t *testing.T) {
	rmqtest.Reset()
	got, err := rmqtest.Consume(rmqtest.Context(),
		rmqtest.NewMessage("in", "hello"),
		rmqtest.NewMessage("in", "a poison pill"),
		rmqtest.NewMessage("in", "again").WithTags("later"),
	)
	want := []rmq.Outcome{rmq.Success(), rmq.DeadLetter("body contains 'poison'"), rmq.Retry()}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
}
