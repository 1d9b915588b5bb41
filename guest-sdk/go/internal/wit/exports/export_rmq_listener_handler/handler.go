// Package export_rmq_listener_handler is the implementation side of the generated export glue
// (internal/wit/exports/wit_exports calls Consume). wit-bindgen expects a package with a Consume
// function here; a variable of function type is called the same way, and package rmq sets it, so
// the generated code need not import the SDK (which would be an import cycle).
//
// Hand-written: scripts/gen-bindings.sh leaves it alone.
package export_rmq_listener_handler

import (
	types "rmqwasm.dev/sdk/internal/wit/imports/rmq_listener_types"
	witTypes "rmqwasm.dev/sdk/internal/witpkg/types"
)

// Consume handles one batch; set by package rmq before the first call.
var Consume func(ctx types.ConsumeContext, batch types.Batch) witTypes.Result[[]types.MessageOutcome, types.ListenerError]
