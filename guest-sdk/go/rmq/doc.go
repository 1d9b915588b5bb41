// Package rmq is the Go SDK for rmq-wasm listener components: Go code that the rmq-wasm host calls
// with batches of Apache RocketMQ messages, compiled with GOOS=wasip1 and made a component of the
// rmq:listener@0.2.0 world by `rmq-wasm plugin componentize`.
//
// A listener registers one Handler, which answers each batch with one Outcome per message:
//
//	func init() {
//		rmq.Handle(func(ctx *rmq.ConsumeContext, msgs []rmq.Message) ([]rmq.Outcome, error) {
//			out := make([]rmq.Outcome, len(msgs))
//			for i, m := range msgs {
//				if len(m.Body()) == 0 {
//					out[i] = rmq.DeadLetter("empty body")
//				} else {
//					out[i] = rmq.Success()
//				}
//			}
//			return out, nil
//		})
//	}
//
//	func main() {}
//
// While it runs, a handler may write to the host's log (Log), read its configuration (Config)
// and send messages through the host's producer (Producer). The same concepts and names as the
// Rust SDK (guest-sdk/src), in Go's spelling.
//
// Messages are views: a Message reads its fields in place from the batch the host handed over
// (text fields are strings sharing the batch's bytes, Body is a sub-slice), so reading a field
// copies nothing. They stay valid after the call (the GC keeps the batch alive while anything
// refers to it), but do not modify a Body slice: the text fields share its memory.
//
// On GOOS=wasip1 the host functions call the component's imports; on any other GOOS they talk to
// an in-process fake host that tests drive through package rmqtest, so listener logic is unit
// tested with plain `go test`.
//
// Sandbox notes: the host grants no WASI by default, so time.Now reads the Unix epoch and the
// monotonic clock stands still unless the listener is granted clocks (use the messages'
// timestamps), there are no files, environment variables or network, stdout is discarded, and
// stderr (a panic's message) is attached to the host's log line of a failed call. A panic aborts
// the component: the host treats the batch as failed (retry, then isolate the poison message).
// Goroutines run only while the handler blocks on them; time.Sleep and timers never fire while
// the clocks are frozen.
package rmq
