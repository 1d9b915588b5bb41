//go:build !wasip1

// Package fakehost is the in-process host that package rmq talks to on a native GOOS, and that
// package rmqtest drives: config, captured log lines and sends. One host per process (Go tests
// of a package run one at a time unless they call t.Parallel; rmqtest.Reset starts afresh).
package fakehost

import (
	"sync"

	types "rmqwasm.dev/sdk/internal/wit/imports/rmq_listener_types"
)

// Line is one logged line.
type Line struct {
	Level   uint8
	Message string
}

// State is everything the fake host holds.
type State struct {
	Config [][2]string // sorted by key
	Logs   []Line
	// Sent holds the messages sent successfully, as package rmq's OutgoingMessage (any, to keep
	// this package below rmq).
	Sent []any
	// OnSend decides a send's result: a receipt or an error (nil hook: every send succeeds).
	OnSend func(msg any) (any, error)
}

var (
	mu    sync.Mutex
	state State
)

// With runs f on the state, locked.
func With[R any](f func(*State) R) R {
	mu.Lock()
	defer mu.Unlock()
	return f(&state)
}

// Reset clears the state.
func Reset() { With(func(s *State) struct{} { *s = State{}; return struct{}{} }) }

// Consume runs package rmq's export on a WIT batch, the outcomes converted back through the WIT
// types: []rmq.Outcome (any, to keep this package below rmq). Set by rmq's init.
var Consume func(ctx types.ConsumeContext, batch types.Batch) (outcomes any, err error)

// SetHandler replaces package rmq's registered handler (an rmq.Handler or nil). Set by rmq's init.
var SetHandler func(h any)
