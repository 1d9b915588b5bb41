//! The languages `plugin new` and `plugin build` know, one row each: its template files (embedded
//! in the binary, with the WIT and the language's SDK), how a project of it is recognised and how
//! it is built. A language is added with a row here, a `host/templates/<lang>/` directory and a
//! build function in `build.rs`.

use std::path::PathBuf;

use super::build::{self, BuildError, Project};

/// `--lang`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    Rust,
    Python,
    Js,
    Go,
}

/// One language's row.
#[derive(Debug)]
pub(crate) struct Language {
    pub lang: Lang,
    /// Shown in progress lines and the project README.
    pub title: &'static str,
    /// What the author needs besides `rmq-wasm` (project README).
    pub toolchain: &'static str,
    /// A file only this language's projects have at their root: how `plugin build` tells.
    pub marker: &'static str,
    /// The file holding the listener (project README).
    pub source: &'static str,
    /// Where the SDK lands in the project (project README).
    pub sdk: &'static str,
    /// The native unit-test command (project README).
    pub test: &'static str,
    /// The project's files: path in the project, contents (`{{name}}` is the project's name).
    pub files: &'static [(&'static str, &'static str)],
    /// Builds the project's component; returns the `.wasm` it wrote.
    pub build: fn(&Project) -> Result<PathBuf, BuildError>,
}

/// A file of `host/templates/`.
macro_rules! template {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/templates/", $path))
    };
}

/// A file of the repository (the WIT, the SDKs), carried by the binary.
macro_rules! repo {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../", $path))
    };
}

const WIT: (&str, &str) = ("wit/listener.wit", repo!("wit/listener.wit"));
const README: (&str, &str) = ("README.md", template!("README.md"));

pub(crate) const LANGUAGES: &[Language] = &[
    Language {
        lang: Lang::Rust,
        title: "Rust",
        toolchain: "cargo with the wasm32-wasip2 target (`rustup target add wasm32-wasip2`)",
        marker: "Cargo.toml",
        source: "src/lib.rs",
        sdk: "`vendor/rmq-wasm-guest`, crate `rmq-wasm-guest`",
        test: "cargo test",
        files: &[
            ("Cargo.toml", template!("rust/Cargo.toml")),
            ("src/lib.rs", template!("rust/src/lib.rs")),
            (".gitignore", template!("rust/.gitignore")),
            // 128-bit SIMD, as the repository's plugins (wasmtime runs it; body searches gain).
            (".cargo/config.toml", repo!("plugins/.cargo/config.toml")),
            README,
            WIT,
            ("vendor/rmq-wasm-guest/Cargo.toml", repo!("guest-sdk/rust/Cargo.toml")),
            ("vendor/rmq-wasm-guest/src/lib.rs", repo!("guest-sdk/rust/src/lib.rs")),
            ("vendor/rmq-wasm-guest/src/convert.rs", repo!("guest-sdk/rust/src/convert.rs")),
            ("vendor/rmq-wasm-guest/src/host.rs", repo!("guest-sdk/rust/src/host.rs")),
            ("vendor/rmq-wasm-guest/src/testing.rs", repo!("guest-sdk/rust/src/testing.rs")),
            ("vendor/rmq-wasm-guest/src/types.rs", repo!("guest-sdk/rust/src/types.rs")),
        ],
        build: build::rust,
    },
    Language {
        lang: Lang::Python,
        title: "Python",
        toolchain: "Python ≥ 3.10 (componentize-py is installed on first build)",
        marker: "app.py",
        source: "app.py",
        sdk: "`rmq_wasm/`",
        test: "python3 -m unittest",
        files: &[
            ("app.py", template!("python/app.py")),
            ("test_app.py", template!("python/test_app.py")),
            (".gitignore", template!("python/.gitignore")),
            README,
            WIT,
            ("rmq_wasm/__init__.py", repo!("guest-sdk/python/rmq_wasm/__init__.py")),
            ("rmq_wasm/_host.py", repo!("guest-sdk/python/rmq_wasm/_host.py")),
            ("rmq_wasm/adapter.py", repo!("guest-sdk/python/rmq_wasm/adapter.py")),
            ("rmq_wasm/config.py", repo!("guest-sdk/python/rmq_wasm/config.py")),
            ("rmq_wasm/log.py", repo!("guest-sdk/python/rmq_wasm/log.py")),
            ("rmq_wasm/producer.py", repo!("guest-sdk/python/rmq_wasm/producer.py")),
            ("rmq_wasm/testing.py", repo!("guest-sdk/python/rmq_wasm/testing.py")),
            ("rmq_wasm/types.py", repo!("guest-sdk/python/rmq_wasm/types.py")),
            ("rmq_wasm/views.py", repo!("guest-sdk/python/rmq_wasm/views.py")),
        ],
        build: build::python,
    },
    Language {
        lang: Lang::Js,
        title: "JavaScript",
        toolchain: "node ≥ 20 with npm (componentize-js is installed on first build)",
        marker: "package.json",
        source: "listener.js",
        sdk: "`rmq-wasm/`",
        test: "npm test",
        files: &[
            ("listener.js", template!("js/listener.js")),
            ("listener.test.js", template!("js/listener.test.js")),
            ("package.json", template!("js/package.json")),
            (".gitignore", template!("js/.gitignore")),
            README,
            WIT,
            ("rmq-wasm/rmq-wasm.js", repo!("guest-sdk/js/rmq-wasm.js")),
            ("rmq-wasm/testing.js", repo!("guest-sdk/js/testing.js")),
            ("rmq-wasm/testing/register.js", repo!("guest-sdk/js/testing/register.js")),
            ("rmq-wasm/testing/hooks.js", repo!("guest-sdk/js/testing/hooks.js")),
            ("rmq-wasm/testing/log.js", repo!("guest-sdk/js/testing/log.js")),
            ("rmq-wasm/testing/config.js", repo!("guest-sdk/js/testing/config.js")),
            ("rmq-wasm/testing/producer.js", repo!("guest-sdk/js/testing/producer.js")),
        ],
        build: build::js,
    },
    Language {
        lang: Lang::Go,
        title: "Go",
        toolchain: "Go ≥ 1.25 (`GOOS=wasip1`; componentized by `rmq-wasm` itself)",
        marker: "go.mod",
        source: "main.go",
        sdk: "`sdk/`, module `rmqwasm.dev/sdk`",
        test: "go test ./...",
        files: &[
            ("go.mod", template!("go/go.mod")),
            ("main.go", template!("go/main.go")),
            ("main_test.go", template!("go/main_test.go")),
            (".gitignore", template!("go/.gitignore")),
            README,
            WIT,
            ("sdk/go.mod", repo!("guest-sdk/go/go.mod")),
            (
                "sdk/internal/fakehost/fakehost.go",
                repo!("guest-sdk/go/internal/fakehost/fakehost.go"),
            ),
            (
                "sdk/internal/wit/exports/export_rmq_listener_handler/handler.go",
                repo!("guest-sdk/go/internal/wit/exports/export_rmq_listener_handler/handler.go"),
            ),
            (
                "sdk/internal/wit/exports/wit_exports/wit_exports.go",
                repo!("guest-sdk/go/internal/wit/exports/wit_exports/wit_exports.go"),
            ),
            (
                "sdk/internal/wit/imports/rmq_listener_config/empty.s",
                repo!("guest-sdk/go/internal/wit/imports/rmq_listener_config/empty.s"),
            ),
            (
                "sdk/internal/wit/imports/rmq_listener_config/wit_bindings.go",
                repo!("guest-sdk/go/internal/wit/imports/rmq_listener_config/wit_bindings.go"),
            ),
            (
                "sdk/internal/wit/imports/rmq_listener_handler/empty.s",
                repo!("guest-sdk/go/internal/wit/imports/rmq_listener_handler/empty.s"),
            ),
            (
                "sdk/internal/wit/imports/rmq_listener_handler/wit_bindings.go",
                repo!("guest-sdk/go/internal/wit/imports/rmq_listener_handler/wit_bindings.go"),
            ),
            (
                "sdk/internal/wit/imports/rmq_listener_log/empty.s",
                repo!("guest-sdk/go/internal/wit/imports/rmq_listener_log/empty.s"),
            ),
            (
                "sdk/internal/wit/imports/rmq_listener_log/wit_bindings.go",
                repo!("guest-sdk/go/internal/wit/imports/rmq_listener_log/wit_bindings.go"),
            ),
            (
                "sdk/internal/wit/imports/rmq_listener_producer/empty.s",
                repo!("guest-sdk/go/internal/wit/imports/rmq_listener_producer/empty.s"),
            ),
            (
                "sdk/internal/wit/imports/rmq_listener_producer/wit_bindings.go",
                repo!("guest-sdk/go/internal/wit/imports/rmq_listener_producer/wit_bindings.go"),
            ),
            (
                "sdk/internal/wit/imports/rmq_listener_types/empty.s",
                repo!("guest-sdk/go/internal/wit/imports/rmq_listener_types/empty.s"),
            ),
            (
                "sdk/internal/wit/imports/rmq_listener_types/wit_bindings.go",
                repo!("guest-sdk/go/internal/wit/imports/rmq_listener_types/wit_bindings.go"),
            ),
            ("sdk/internal/witpkg/LICENSE", repo!("guest-sdk/go/internal/witpkg/LICENSE")),
            (
                "sdk/internal/witpkg/runtime/empty.s",
                repo!("guest-sdk/go/internal/witpkg/runtime/empty.s"),
            ),
            (
                "sdk/internal/witpkg/runtime/runtime.go",
                repo!("guest-sdk/go/internal/witpkg/runtime/runtime.go"),
            ),
            (
                "sdk/internal/witpkg/types/option.go",
                repo!("guest-sdk/go/internal/witpkg/types/option.go"),
            ),
            (
                "sdk/internal/witpkg/types/result.go",
                repo!("guest-sdk/go/internal/witpkg/types/result.go"),
            ),
            (
                "sdk/internal/witpkg/types/tuple.go",
                repo!("guest-sdk/go/internal/witpkg/types/tuple.go"),
            ),
            (
                "sdk/internal/witpkg/types/unit.go",
                repo!("guest-sdk/go/internal/witpkg/types/unit.go"),
            ),
            ("sdk/rmq/config.go", repo!("guest-sdk/go/rmq/config.go")),
            ("sdk/rmq/context.go", repo!("guest-sdk/go/rmq/context.go")),
            ("sdk/rmq/doc.go", repo!("guest-sdk/go/rmq/doc.go")),
            ("sdk/rmq/handler.go", repo!("guest-sdk/go/rmq/handler.go")),
            ("sdk/rmq/host_native.go", repo!("guest-sdk/go/rmq/host_native.go")),
            ("sdk/rmq/host_wasip1.go", repo!("guest-sdk/go/rmq/host_wasip1.go")),
            ("sdk/rmq/log.go", repo!("guest-sdk/go/rmq/log.go")),
            ("sdk/rmq/message.go", repo!("guest-sdk/go/rmq/message.go")),
            ("sdk/rmq/outcome.go", repo!("guest-sdk/go/rmq/outcome.go")),
            ("sdk/rmq/producer.go", repo!("guest-sdk/go/rmq/producer.go")),
            ("sdk/rmqtest/rmqtest.go", repo!("guest-sdk/go/rmqtest/rmqtest.go")),
        ],
        build: build::go,
    },
];

impl Lang {
    pub(crate) fn row(self) -> &'static Language {
        LANGUAGES.iter().find(|l| l.lang == self).expect("every Lang has a row")
    }
}
