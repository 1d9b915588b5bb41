module listener

go 1.25

require rmqwasm.dev/sdk v0.0.0

// The SDK comes with the project (copied in by `rmq-wasm plugin new`): nothing to download.
replace rmqwasm.dev/sdk => ./sdk
