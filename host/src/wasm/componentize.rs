//! Core module → `rmq:listener` component, in-process: the last step of building a Go
//! (`GOOS=wasip1`, `-buildmode=c-shared`) or C (wasi-libc, `-mexec-model=reactor`) listener, so
//! that authors need neither `wasm-tools` nor an adapter file — the binary carries both the WIT
//! and the WASI preview-1 reactor adapter of the wasmtime line it runs on.
//!
//! The module's `component-type` custom section says which world it implements: `wit-bindgen c`
//! links one in; a module without one (Go's bindings carry none) gets the `rmq:listener` world
//! embedded here. The result is validated by wit-component; whether it fits the host's world is
//! checked by loading it (the engine's own type check).

use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

/// The WIT of the world every listener implements, as the host was built with it.
pub const LISTENER_WIT: &str = include_str!("../../../wit/listener.wit");

/// Why a core module could not become a listener component.
#[derive(Debug, thiserror::Error)]
pub enum ComponentizeError {
    /// The input is not a core Wasm module (a component, or not Wasm at all).
    #[error("not a core WebAssembly module: {0}")]
    NotACoreModule(String),
    /// wit-component refused the module: an import the world and WASI preview 1 do not have, an
    /// export with the wrong signature, a bad `component-type` section. Its message names the item.
    /// (wit-component's errors are `anyhow`; kept as their full chain of context.)
    #[error("cannot make a component of this module: {0}")]
    Encode(String),
}

/// Makes `core` (a reactor module importing at most `wasi_snapshot_preview1` and the world's
/// interfaces) a component of the `rmq:listener@0.2.0` world.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, ComponentizeError> {
    check_core_module(core)?;
    let mut module = core.to_vec();
    if !has_component_type(core) {
        embed_listener_world(&mut module)?;
    }
    ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|encoder| {
            encoder.adapter(
                WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
        })
        .and_then(|mut encoder| encoder.encode())
        .map_err(encode_error)
}

fn encode_error(e: impl std::fmt::Display) -> ComponentizeError {
    ComponentizeError::Encode(format!("{e:#}"))
}

fn check_core_module(bytes: &[u8]) -> Result<(), ComponentizeError> {
    match wasmparser::Parser::new(0).parse(bytes, true) {
        Ok(wasmparser::Chunk::Parsed {
            payload: wasmparser::Payload::Version { encoding, .. },
            ..
        }) => match encoding {
            wasmparser::Encoding::Module => Ok(()),
            wasmparser::Encoding::Component => {
                Err(ComponentizeError::NotACoreModule("it is already a component".into()))
            }
        },
        Ok(_) => Err(ComponentizeError::NotACoreModule("no Wasm header".into())),
        Err(e) => Err(ComponentizeError::NotACoreModule(e.to_string())),
    }
}

/// Whether some custom section already says which world the module implements (wit-component
/// reads every section whose name starts with `component-type`).
fn has_component_type(bytes: &[u8]) -> bool {
    wasmparser::Parser::new(0).parse_all(bytes).filter_map(Result::ok).any(|payload| {
        matches!(payload, wasmparser::Payload::CustomSection(section)
                if section.name().starts_with("component-type"))
    })
}

fn embed_listener_world(module: &mut Vec<u8>) -> Result<(), ComponentizeError> {
    let mut resolve = Resolve::default();
    let package = resolve.push_str("listener.wit", LISTENER_WIT).map_err(encode_error)?;
    let world = resolve.select_world(&[package], Some("listener")).map_err(encode_error)?;
    wit_component::embed_component_metadata(module, &resolve, world, StringEncoding::UTF8)
        .map_err(encode_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest module: just the header.
    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn refuses_what_is_not_a_core_module() {
        for (input, expected) in [
            (&b"not wasm"[..], "not a core WebAssembly module"),
            (&b"\0asm\x0d\0\x01\0"[..], "already a component"),
        ] {
            let err = componentize(input).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn a_module_without_the_handler_export_is_refused_naming_it() {
        let err = componentize(EMPTY_MODULE).unwrap_err().to_string();
        assert!(err.contains("consume"), "{err}");
    }

    #[test]
    fn the_world_is_embedded_only_when_missing() {
        assert!(!has_component_type(EMPTY_MODULE));
        let mut module = EMPTY_MODULE.to_vec();
        embed_listener_world(&mut module).unwrap();
        assert!(has_component_type(&module));
    }
}
