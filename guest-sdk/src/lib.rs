//! Guest SDK for rmq-wasm listener components (filled in with the WIT world).
