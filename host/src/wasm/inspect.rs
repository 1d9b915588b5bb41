//! What a component is, in the host's terms: its exports and imports, whether it fits the
//! `rmq:listener@0.2.0` world, and the `[[listener]]` grants its imports call for
//! (`rmq-wasm plugin check`), and [`check_world`], the pass/fail of `rmq-wasm plugin build`.
//! One table ([`provision`]) says what the host links, so the two verbs cannot disagree.
//!
//! The verdict is the engine's own: a component fits when it compiles with the host's engine,
//! links against the host's linker and its `handler` export type-checks — exactly what loading
//! it for a listener does. The per-item lines (a missing export function, an import the host
//! never provides) come from reading the component's type, so that a misfit names every
//! offending item instead of the first one the linker trips on.

use std::fmt;
use std::path::Path;

use wasmtime::component::types::ComponentItem;

use super::engine::{SandboxEngine, read_plugin};
use super::{PluginVersion, WasmError};

/// The world's package, as export and import names carry it.
pub const WORLD_PACKAGE: &str = "rmq:listener";
/// The world's version the host implements.
pub const WORLD_VERSION: &str = "0.2.0";
/// The one export a listener must have, and its function.
pub const HANDLER_INTERFACE: &str = "handler";
pub const HANDLER_FUNC: &str = "consume";

/// How the host answers one imported interface, and what a listener must grant for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provision {
    /// Types only: nothing to grant.
    Types,
    /// Always available, bounded by the listener's limits (`log`).
    Bounded,
    /// Reads the `[listener.config]` table.
    Config,
    /// Sends are denied unless the listener's `produce_topics` grants the topic.
    Produce,
    /// Linked; the real clocks only with `clocks = true` (frozen otherwise).
    Clocks,
    /// Linked but every operation is denied, and no key grants it (filesystem, network).
    Denied,
    /// Linked and harmless: no grant needed (stdio stubs, streams, randomness).
    Stub,
    /// The host has nothing under this name: the component cannot be loaded.
    Missing,
}

impl Provision {
    /// The `[[listener]]` key that grants it, if any.
    pub fn grant_key(self) -> Option<&'static str> {
        match self {
            Self::Config => Some("config"),
            Self::Produce => Some("produce_topics"),
            Self::Clocks => Some("clocks"),
            _ => None,
        }
    }

    /// One line for a person.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Types => "types",
            Self::Bounded => "no grant; capped by max_log_lines and log_level",
            Self::Config => "grant: [listener.config] keys",
            Self::Produce => "grant: produce_topics (unset: every send denied)",
            Self::Clocks => "grant: clocks = true (unset: frozen at the epoch)",
            Self::Denied => "linked, every call denied (no directory, no network)",
            Self::Stub => "linked, no grant needed",
            Self::Missing => "the host never provides it",
        }
    }
}

/// The provision of an imported interface `name` (`ns:pkg/iface@version`).
///
/// The table mirrors what `SandboxEngine::new` links: the `rmq:listener` imports (bindgen of
/// `wit/`) and WASI 0.2 (`wasmtime_wasi::p2::add_to_linker_async`). Versions match like the
/// linker's: any `0.2.x`. `tests/tests/plugin_tools.rs` checks every built plugin (one
/// imports all of WASI) to keep the two in step.
pub fn provision(name: &str) -> Provision {
    let Some((path, version)) = name.split_once('@') else { return Provision::Missing };
    if !version.starts_with("0.2.") {
        return Provision::Missing;
    }
    match path {
        "rmq:listener/types" => Provision::Types,
        "rmq:listener/log" => Provision::Bounded,
        "rmq:listener/config" => Provision::Config,
        "rmq:listener/producer" => Provision::Produce,
        "wasi:clocks/wall-clock" | "wasi:clocks/monotonic-clock" => Provision::Clocks,
        "wasi:filesystem/types"
        | "wasi:filesystem/preopens"
        | "wasi:sockets/tcp"
        | "wasi:sockets/udp"
        | "wasi:sockets/tcp-create-socket"
        | "wasi:sockets/udp-create-socket"
        | "wasi:sockets/instance-network"
        | "wasi:sockets/network"
        | "wasi:sockets/ip-name-lookup" => Provision::Denied,
        "wasi:io/error"
        | "wasi:io/poll"
        | "wasi:io/streams"
        | "wasi:random/random"
        | "wasi:random/insecure"
        | "wasi:random/insecure-seed"
        | "wasi:cli/exit"
        | "wasi:cli/environment"
        | "wasi:cli/stdin"
        | "wasi:cli/stdout"
        | "wasi:cli/stderr"
        | "wasi:cli/terminal-input"
        | "wasi:cli/terminal-output"
        | "wasi:cli/terminal-stdin"
        | "wasi:cli/terminal-stdout"
        | "wasi:cli/terminal-stderr" => Provision::Stub,
        _ => Provision::Missing,
    }
}

/// One import of the component.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Import {
    pub name: String,
    pub provision: Provision,
}

/// Why a component does not fit the world; each names the item at fault.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "item", rename_all = "kebab-case")]
pub enum Misfit {
    /// A required export (instance or function) is not there.
    MissingExport(String),
    /// An import the host has nothing for.
    UnknownImport(String),
    /// A WASI import outside the caller's allowed list (`plugin check --wasi`).
    WasiNotAllowed(String),
    /// The engine refused to link or type-check it (a mistyped item), in its words.
    Engine(String),
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingExport(item) => write!(f, "export `{item}` is missing"),
            Self::UnknownImport(item) => {
                write!(f, "imports `{item}`, which the host never provides")
            }
            Self::WasiNotAllowed(item) => {
                write!(f, "imports `{item}`, which --wasi does not allow")
            }
            Self::Engine(reason) => write!(f, "the host's engine refuses it: {reason}"),
        }
    }
}

/// What `plugin check` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// Exported items, instances as `name#func` per function.
    pub exports: Vec<String>,
    pub imports: Vec<Import>,
    /// Empty when the component fits.
    pub misfits: Vec<Misfit>,
    /// sha256 of the file, as listeners and DLQ properties name versions.
    pub sha256: String,
    pub bytes: usize,
}

impl Inspection {
    pub fn fits(&self) -> bool {
        self.misfits.is_empty()
    }

    /// The `[[listener]]` keys its imports call for, each once, in key order.
    pub fn grants(&self) -> Vec<&'static str> {
        let mut keys: Vec<_> =
            self.imports.iter().filter_map(|i| i.provision.grant_key()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Adds a misfit for every WASI import not under one of `allowed` (prefixes such as
    /// `wasi:cli/`): a build can insist that a component uses less than the host links.
    pub fn restrict_wasi(&mut self, allowed: &[String]) {
        for import in &self.imports {
            if import.name.starts_with("wasi:")
                && import.provision != Provision::Missing
                && !allowed.iter().any(|p| import.name.starts_with(p.as_str()))
            {
                self.misfits.push(Misfit::WasiNotAllowed(import.name.clone()));
            }
        }
    }
}

/// The handler export's name for the world's version.
fn handler_export() -> String {
    format!("{WORLD_PACKAGE}/{HANDLER_INTERFACE}@{WORLD_VERSION}")
}

impl SandboxEngine {
    /// Reads, compiles and links `path` as [`SandboxEngine::load`] does, and reports what it
    /// exports and imports and how it misfits the world. Errors are only for a file that is not
    /// a component at all (unreadable, not wasm, a core module).
    pub fn inspect(&self, path: &Path) -> Result<Inspection, WasmError> {
        let bytes = read_plugin(path, self.config().max_module_size)?;
        let hash = super::ContentHash::of(&bytes);
        let component = self.compile_component(path, &bytes, &hash)?;
        let engine = self.engine();
        let ty = component.component_type();

        let mut exports = Vec::new();
        for (name, item) in ty.exports(engine) {
            match item.ty {
                // Functions only: the types an interface exports are not items to call. An
                // instance without any is listed by its name.
                ComponentItem::ComponentInstance(inst) => {
                    let before = exports.len();
                    exports.extend(
                        inst.exports(engine)
                            .filter(|(_, e)| matches!(e.ty, ComponentItem::ComponentFunc(_)))
                            .map(|(f, _)| format!("{name}#{f}")),
                    );
                    if exports.len() == before {
                        exports.push(name.to_owned());
                    }
                }
                _ => exports.push(name.to_owned()),
            }
        }
        let imports: Vec<Import> = ty
            .imports(engine)
            .map(|(name, _)| Import { name: name.to_owned(), provision: provision(name) })
            .collect();

        let mut misfits = Vec::new();
        let handler = handler_export();
        let consume = format!("{handler}#{HANDLER_FUNC}");
        // The host finds the handler by semver (any 0.2.x), like the linker.
        let handler_prefix = format!("{WORLD_PACKAGE}/{HANDLER_INTERFACE}@0.2.");
        let exported = |suffix: &str| {
            exports.iter().any(|e| e.starts_with(&handler_prefix) && e.ends_with(suffix))
        };
        if !exports.iter().any(|e| e.starts_with(&handler_prefix)) {
            misfits.push(Misfit::MissingExport(handler));
        } else if !exported(&format!("#{HANDLER_FUNC}")) {
            misfits.push(Misfit::MissingExport(consume));
        }
        misfits.extend(
            imports
                .iter()
                .filter(|i| i.provision == Provision::Missing)
                .map(|i| Misfit::UnknownImport(i.name.clone())),
        );
        // The engine's verdict, for what reading the names cannot see (a mistyped function).
        if let Err(reason) = self.link(&component)
            && misfits.is_empty()
        {
            misfits.push(Misfit::Engine(reason));
        }
        Ok(Inspection { exports, imports, misfits, sha256: hash.hex(), bytes: bytes.len() })
    }
}

/// Why a component is not a listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorldMismatch {
    /// Every item at fault, as `plugin check` names them.
    #[error("{path} does not fit rmq:listener@{WORLD_VERSION}: {}", join(misfits))]
    Misfits { path: String, misfits: Vec<Misfit> },
    /// Unreadable, not a component, or refused for a reason no item explains.
    #[error(transparent)]
    Load(#[from] WasmError),
}

fn join(misfits: &[Misfit]) -> String {
    misfits.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Loads `path` as `rmq-wasm run` would (the same compile, link and type check, so the verdict
/// cannot disagree with a listener's start-up); when that refuses it, [`SandboxEngine::inspect`]
/// names every item at fault instead of the linker's first complaint.
pub fn check_world(engine: &SandboxEngine, path: &Path) -> Result<PluginVersion, WorldMismatch> {
    let original = match engine.load_blocking(path) {
        Ok(version) => return Ok(version),
        Err(e @ WasmError::Invalid { .. }) => e,
        Err(e) => return Err(e.into()),
    };
    let misfits = engine.inspect(path)?.misfits;
    if misfits.is_empty() {
        return Err(WorldMismatch::Load(original));
    }
    Err(WorldMismatch::Misfits { path: path.display().to_string(), misfits })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::tests::{engine, plugin};

    #[test]
    fn check_world_passes_a_listener_and_names_what_a_component_lacks() {
        check_world(engine(), &plugin("filter")).unwrap();

        let dir = tempfile::tempdir().unwrap();
        // The smallest valid component: preamble, component-model version and layer, no items.
        let empty = dir.path().join("empty.wasm");
        std::fs::write(&empty, b"\0asm\x0d\x00\x01\x00").unwrap();
        let e = check_world(engine(), &empty).unwrap_err();
        assert!(
            matches!(&e, WorldMismatch::Misfits { misfits, .. }
                if misfits == &[Misfit::MissingExport(handler_export())]),
            "{e}"
        );
        assert!(
            e.to_string().ends_with(
                "empty.wasm does not fit rmq:listener@0.2.0: \
                 export `rmq:listener/handler@0.2.0` is missing"
            ),
            "{e}"
        );

        // A core module is not a component: the engine's own error, passed through.
        let core = dir.path().join("core.wasm");
        std::fs::write(&core, b"\0asm\x01\x00\x00\x00").unwrap();
        let e = check_world(engine(), &core).unwrap_err();
        assert!(matches!(e, WorldMismatch::Load(WasmError::Compile { .. })), "{e}");
    }

    #[test]
    fn imports_map_to_the_grants_the_listener_config_has() {
        let table = [
            ("rmq:listener/types@0.2.0", Provision::Types, None),
            ("rmq:listener/log@0.2.0", Provision::Bounded, None),
            ("rmq:listener/config@0.2.0", Provision::Config, Some("config")),
            ("rmq:listener/producer@0.2.1", Provision::Produce, Some("produce_topics")),
            ("wasi:clocks/wall-clock@0.2.3", Provision::Clocks, Some("clocks")),
            ("wasi:sockets/tcp@0.2.0", Provision::Denied, None),
            ("wasi:filesystem/preopens@0.2.6", Provision::Denied, None),
            ("wasi:cli/stderr@0.2.0", Provision::Stub, None),
            ("wasi:http/outgoing-handler@0.2.0", Provision::Missing, None),
            ("rmq:listener/log@0.3.0", Provision::Missing, None),
            ("wasi:cli/stderr@0.3.0-rc", Provision::Missing, None),
            ("rmq:listener/log", Provision::Missing, None),
            ("my:own/thing@1.0.0", Provision::Missing, None),
        ];
        for (name, expected, key) in table {
            assert_eq!(provision(name), expected, "{name}");
            assert_eq!(provision(name).grant_key(), key, "{name}");
        }
    }

    #[test]
    fn misfits_name_the_item() {
        let table = [
            (
                Misfit::MissingExport("rmq:listener/handler@0.2.0#consume".into()),
                "export `rmq:listener/handler@0.2.0#consume` is missing",
            ),
            (
                Misfit::UnknownImport("wasi:http/types@0.2.0".into()),
                "imports `wasi:http/types@0.2.0`, which the host never provides",
            ),
            (
                Misfit::WasiNotAllowed("wasi:sockets/tcp@0.2.0".into()),
                "imports `wasi:sockets/tcp@0.2.0`, which --wasi does not allow",
            ),
        ];
        for (misfit, text) in table {
            assert_eq!(misfit.to_string(), text);
        }
    }

    #[test]
    fn wasi_can_be_restricted_to_prefixes() {
        let import = |name: &str| Import { name: name.into(), provision: provision(name) };
        let mut i = Inspection {
            exports: vec![],
            imports: vec![
                import("rmq:listener/log@0.2.0"),
                import("wasi:cli/stderr@0.2.0"),
                import("wasi:sockets/tcp@0.2.0"),
            ],
            misfits: vec![],
            sha256: String::new(),
            bytes: 0,
        };
        i.restrict_wasi(&["wasi:cli/".into(), "wasi:io/".into()]);
        assert_eq!(i.misfits, [Misfit::WasiNotAllowed("wasi:sockets/tcp@0.2.0".into())]);
        assert!(!i.fits());
    }
}
