//go:build wasip1

package rmq

import (
	"runtime/debug"

	configimp "rmqwasm.dev/sdk/internal/wit/imports/rmq_listener_config"
	logimp "rmqwasm.dev/sdk/internal/wit/imports/rmq_listener_log"
	producerimp "rmqwasm.dev/sdk/internal/wit/imports/rmq_listener_producer"
	types "rmqwasm.dev/sdk/internal/wit/imports/rmq_listener_types"
	witTypes "rmqwasm.dev/sdk/internal/witpkg/types"

	export "rmqwasm.dev/sdk/internal/wit/exports/export_rmq_listener_handler"
	_ "rmqwasm.dev/sdk/internal/wit/exports/wit_exports" // the //go:wasmexport glue
)

// The Go GC must not start inside cabi_realloc: it reads the monotonic clock, and the component
// model forbids calling an import (the clock, through the WASI adapter) while the host is
// lowering arguments into guest memory. Newer WASI adapters pause their clock for this; wasmtime
// 48's has no such switch. So the GC is off outside handler calls (the host lowers a batch
// before the call starts) and on while the handler runs, where it may collect as usual.
func init() {
	debug.SetGCPercent(-1)
	export.Consume = func(ctx types.ConsumeContext, batch types.Batch) witResult {
		debug.SetGCPercent(100)
		defer debug.SetGCPercent(-1)
		return consumeBatch(ctx, batch)
	}
}

func hostLog(level Level, message string) { logimp.Log(logimp.Level(level), message) }

func hostConfigGet(key string) (string, bool) {
	v := configimp.Get(key)
	return v.SomeOr(""), v.IsSome()
}

func hostConfigAll() []Property {
	all := configimp.All()
	out := make([]Property, len(all))
	for i, kv := range all {
		out[i] = Property{kv.F0, kv.F1}
	}
	return out
}

func hostSend(msg OutgoingMessage) (SendReceipt, error) {
	w := producerimp.OutgoingMessage{Topic: msg.Topic, Keys: msg.Keys, Body: msg.Body}
	if msg.Tags != "" {
		w.Tags = witTypes.Some(msg.Tags)
	}
	for _, p := range msg.Properties {
		w.Properties = append(w.Properties, witTypes.Tuple2[string, string]{F0: p.Name, F1: p.Value})
	}
	r := producerimp.Send(w)
	if r.IsErr() {
		e := r.Err()
		switch e.Tag() {
		case producerimp.ProduceError_Invalid:
			return SendReceipt{}, &ProduceError{ProduceInvalid, e.Invalid()}
		case producerimp.ProduceError_Denied:
			return SendReceipt{}, &ProduceError{ProduceDenied, e.Denied()}
		case producerimp.ProduceError_Timeout:
			return SendReceipt{}, &ProduceError{Kind: ProduceTimeout}
		default:
			return SendReceipt{}, &ProduceError{ProduceFailed, e.Failed()}
		}
	}
	ok := r.Ok()
	return SendReceipt{
		Status:      SendStatus(ok.Status),
		MsgID:       ok.MsgId,
		OffsetMsgID: ok.OffsetMsgId,
		Queue:       MessageQueue{ok.Queue.Topic, ok.Queue.BrokerName, ok.Queue.QueueId},
		QueueOffset: ok.QueueOffset,
	}, nil
}
