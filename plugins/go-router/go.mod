module rmqwasm.dev/plugins/go-router

go 1.25

require rmqwasm.dev/sdk v0.0.0

replace rmqwasm.dev/sdk => ../../guest-sdk/go
