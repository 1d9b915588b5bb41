// go-router: an rmq-wasm listener in Go that routes JSON events by a field (or by the message's
// tag when the body has no such field), retries messages with a given tag a bounded number of
// times, and dead-letters messages whose body contains a given word.
//
// Config:
//
//	route.<key>     topic for messages whose route key is <key>
//	route-field     (default "kind") the JSON field holding the route key; a body without it
//	                (or not JSON) is routed by its tag
//	default-topic   topic for other keys (unset: such messages are dead-lettered)
//	retry-tag       messages with this tag are retried ...
//	retry-attempts  (default 1) ... until redelivered this often, then routed like the others
//	delay-level     (optional, 1..18 or 1s..2h) delay of those retries (unset: the broker's)
//	dead-word       messages whose body contains this word are dead-lettered
//
// Outcomes, per message: body contains dead-word -> dead-letter; retry-tag and not yet retried
// retry-attempts times -> retry-later; no route -> dead-letter; routed -> success, the copy
// carries ROUTE_KEY, ROUTED_FROM and ROUTED_AFTER_RETRIES (deliveries before this one);
// send timeout/failure -> retry-later; send denied/invalid -> dead-letter. A malformed config
// fails the whole batch.
package main

import "rmqwasm.dev/sdk/rmq"

func init() { rmq.Handle(consume) }

func main() {}
