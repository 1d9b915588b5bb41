module rmqwasm.dev/sdk

go 1.25
