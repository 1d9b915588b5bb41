//! Whether a component implements the `rmq:listener@0.2.x` world, with what is wrong named:
//! the check behind `rmq-wasm plugin build` (and anything else that wants the verdict without
//! running a listener).
//!
//! Loading with the host's own engine is the check (the same compile, link and type check a
//! listener's start-up does), so it cannot disagree with `rmq-wasm run`. Only when that fails is
//! the component's type read, to name the missing export or the import the host does not
//! provide instead of quoting the linker.

use std::path::Path;

use wasmtime::component::Component;

use super::engine::read_plugin;
use super::{PluginVersion, SandboxEngine, WasmError};

/// The export every listener must have (any 0.2.x patch).
pub const HANDLER_EXPORT: &str = "rmq:listener/handler@0.2";

/// Import names the host links: the world's own interfaces and WASI (granting nothing).
const PROVIDED_IMPORTS: [&str; 5] = [
    "rmq:listener/log@0.2.",
    "rmq:listener/config@0.2.",
    "rmq:listener/producer@0.2.",
    "rmq:listener/types@0.2.",
    "wasi:",
];

/// Why a component is not a listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorldMismatch {
    #[error("{path}: no export {HANDLER_EXPORT}.x (it exports: {found})")]
    MissingExport { path: String, found: String },
    #[error("{path}: imports {name}, which the host does not provide")]
    UnknownImport { path: String, name: String },
    /// Unreadable, not a component, or the linker's own complaint (a mistyped function).
    #[error(transparent)]
    Load(#[from] WasmError),
}

/// Loads `path` as `rmq-wasm run` would; on a mismatch, names it.
pub fn check_world(engine: &SandboxEngine, path: &Path) -> Result<PluginVersion, WorldMismatch> {
    let original = match engine.load_blocking(path) {
        Ok(version) => return Ok(version),
        Err(e @ WasmError::Invalid { .. }) => e,
        Err(e) => return Err(e.into()),
    };
    let bytes = read_plugin(path, engine.config().max_module_size)?;
    let hash = super::ContentHash::of(&bytes);
    let (component, _) = engine.compile(path, &bytes, &hash)?;
    Err(name_mismatch(engine, &component, path).unwrap_or(WorldMismatch::Load(original)))
}

/// The first missing export or unknown import of `component`, if either explains the failure.
fn name_mismatch(
    engine: &SandboxEngine,
    component: &Component,
    path: &Path,
) -> Option<WorldMismatch> {
    let ty = component.component_type();
    let path = path.display().to_string();
    let exports: Vec<&str> = ty.exports(engine.engine()).map(|(name, _)| name).collect();
    if !exports.iter().any(|e| e.starts_with(HANDLER_EXPORT)) {
        let found = if exports.is_empty() { "nothing".into() } else { exports.join(", ") };
        return Some(WorldMismatch::MissingExport { path, found });
    }
    ty.imports(engine.engine())
        .map(|(name, _)| name)
        .find(|name| !PROVIDED_IMPORTS.iter().any(|p| name.starts_with(p)))
        .map(|name| WorldMismatch::UnknownImport { path, name: name.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::tests::{engine, plugin};

    #[test]
    fn a_listener_passes_and_a_component_without_the_handler_is_named() {
        check_world(engine(), &plugin("filter")).unwrap();

        let dir = tempfile::tempdir().unwrap();
        // The smallest valid component: preamble, component-model version and layer, no items.
        let empty = dir.path().join("empty.wasm");
        std::fs::write(&empty, b"\0asm\x0d\x00\x01\x00").unwrap();
        let e = check_world(engine(), &empty).unwrap_err();
        assert!(
            matches!(&e, WorldMismatch::MissingExport { found, .. } if found == "nothing"),
            "{e}"
        );
        assert!(e.to_string().contains("no export rmq:listener/handler@0.2.x"), "{e}");

        // A core module is not a component: the engine's own error, passed through.
        let core = dir.path().join("core.wasm");
        std::fs::write(&core, b"\0asm\x01\x00\x00\x00").unwrap();
        let e = check_world(engine(), &core).unwrap_err();
        assert!(matches!(e, WorldMismatch::Load(WasmError::Compile { .. })), "{e}");
    }
}
