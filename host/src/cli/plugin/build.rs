//! `rmq-wasm plugin build [DIR]`: recognises the project's language, installs its componentize
//! tool on first use (into `<cache>/toolchains/`, beside the compiled-artifact cache), builds
//! `NAME.wasm` (NAME: the directory's name) with the tool's output shown as it comes, and checks
//! the result against the world with the host's own engine (`wasm::check_world`, which names
//! every misfit as `plugin check` does).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use anyhow::Context as _;

use super::lang::{LANGUAGES, Language};
use crate::wasm::componentize::{ComponentizeError, componentize};
use crate::wasm::{EngineConfig, SandboxEngine, check_world, engine::default_cache_dir};

#[derive(Debug, clap::Args)]
pub(crate) struct BuildArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// The project being built.
#[derive(Debug)]
pub(crate) struct Project {
    pub dir: PathBuf,
    /// Where the component goes: `DIR/NAME.wasm`.
    pub out: PathBuf,
}

/// Why a build step failed (the step's own output, already shown, says the rest).
#[derive(Debug, thiserror::Error)]
pub(crate) enum BuildError {
    #[error("running {program}: {source} (is it installed and on PATH?)")]
    Spawn { program: String, source: std::io::Error },
    #[error("{step} failed ({status}); its output is above")]
    Failed { step: String, status: ExitStatus },
    #[error(
        "the Rust target wasm32-wasip2 is not installed: run `rustup target add wasm32-wasip2`"
    )]
    NoWasmTarget,
    #[error("cargo built no .wasm: does Cargo.toml's [lib] say crate-type = [\"cdylib\"]?")]
    NoArtifact,
    #[error(transparent)]
    Componentize(#[from] ComponentizeError),
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

/// The componentize-py release the Python SDK is tested with (as plugins/requirements-build.txt).
const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// componentize-js and its pins, exactly as the repository's JavaScript plugins build.
const JS_TOOLCHAIN: [(&str, &str); 3] = [
    ("package.json", include_str!("../../../../plugins/js-json-router/package.json")),
    ("package-lock.json", include_str!("../../../../plugins/js-json-router/package-lock.json")),
    ("build.mjs", include_str!("../../../../plugins/js-json-router/build.mjs")),
];

pub(crate) fn build(args: &BuildArgs) -> anyhow::Result<()> {
    build_dir(&args.dir)
}

/// Builds the project in `dir` into `DIR/NAME.wasm` (moved into place in one rename) and checks it.
pub(crate) fn build_dir(dir: &Path) -> anyhow::Result<()> {
    let dir = dir.canonicalize().with_context(|| format!("project {}", dir.display()))?;
    let language = detect(&dir)?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let project = Project { out: dir.join(format!("{name}.wasm")), dir };
    eprintln!("building {name} ({})…", language.title);
    let started = Instant::now();
    let wasm = (language.build)(&project)?;
    let size = std::fs::metadata(&wasm).with_context(|| format!("{}", wasm.display()))?.len();
    eprintln!(
        "built {} ({:.1} MiB) in {:.1} s",
        wasm.display(),
        size as f64 / f64::from(1 << 20),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    eprintln!("checking it against rmq:listener@0.2 with the host's engine…");
    let engine = SandboxEngine::new(EngineConfig { max_instances: 1, ..EngineConfig::default() })?;
    let version = check_world(&engine, &wasm)?;
    eprintln!(
        "ok: {} implements rmq:listener@0.2 (version {}, checked in {:.1} s)",
        wasm.display(),
        version.hash.short(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The language whose marker file is in `dir`.
pub(crate) fn detect(dir: &Path) -> anyhow::Result<&'static Language> {
    LANGUAGES.iter().find(|l| dir.join(l.marker).is_file()).with_context(|| {
        let markers: Vec<String> =
            LANGUAGES.iter().map(|l| format!("{} ({})", l.marker, l.title)).collect();
        format!(
            "{} is not a listener project: it has none of {} (`rmq-wasm plugin new` makes one)",
            dir.display(),
            markers.join(", ")
        )
    })
}

/// Runs `cmd`, its output going straight to ours.
fn run(cmd: &mut Command, step: &str) -> Result<(), BuildError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let status = cmd.status().map_err(|source| BuildError::Spawn { program, source })?;
    if status.success() { Ok(()) } else { Err(BuildError::Failed { step: step.into(), status }) }
}

/// `cargo build --release --target wasm32-wasip2`; the artifact is found in cargo's own report,
/// so `CARGO_TARGET_DIR` and workspace layouts need no guessing.
pub(crate) fn rust(p: &Project) -> Result<PathBuf, BuildError> {
    let installed =
        Command::new("rustup").args(["target", "list", "--installed"]).current_dir(&p.dir).output();
    if let Ok(out) = installed
        && out.status.success()
        && !String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "wasm32-wasip2")
    {
        return Err(BuildError::NoWasmTarget);
    }
    let out = Command::new("cargo")
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(&p.dir)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| BuildError::Spawn { program: "cargo".into(), source })?;
    if !out.status.success() {
        return Err(BuildError::Failed { step: "cargo build".into(), status: out.status });
    }
    let built = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact"
                && m["manifest_path"]
                    .as_str()
                    .is_some_and(|m| Path::new(m).starts_with(&p.dir) && !m.contains("/vendor/"))
        })
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .ok_or(BuildError::NoArtifact)?;
    copy(&built, &p.out)?;
    Ok(p.out.clone())
}

/// componentize-py, its WASI imports stubbed (the component imports only the listener world).
pub(crate) fn python(p: &Project) -> Result<PathBuf, BuildError> {
    let venv = install("componentize-py 0.25.1", "componentize-py-0.25.1", |dir| {
        let python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        run(Command::new(python).args(["-m", "venv"]).arg(dir), "python3 -m venv")?;
        run(
            Command::new(dir.join("bin/pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                COMPONENTIZE_PY,
            ]),
            "pip install componentize-py",
        )
    })?;
    let tmp = p.out.with_extension("wasm.tmp");
    run(
        Command::new(venv.join("bin/componentize-py"))
            .args([
                "-d",
                "wit",
                "-w",
                "listener",
                "componentize",
                "--stub-wasi",
                "-p",
                ".",
                "app",
                "-o",
            ])
            .arg(&tmp)
            .current_dir(&p.dir),
        "componentize-py",
    )?;
    rename(&tmp, &p.out)
}

/// componentize-js through its JS API (the repository's build.mjs), run from the project
/// directory so that the listener's imports of `./rmq-wasm/` resolve.
pub(crate) fn js(p: &Project) -> Result<PathBuf, BuildError> {
    let toolchain = install("componentize-js 0.23.0", "componentize-js-0.23.0", |dir| {
        for (name, contents) in JS_TOOLCHAIN {
            let path = dir.join(name);
            std::fs::write(&path, contents).map_err(|source| BuildError::Io {
                what: "writing",
                path,
                source,
            })?;
        }
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(dir),
            "npm ci",
        )
    })?;
    let tmp = p.out.with_extension("wasm.tmp");
    run(
        Command::new("node")
            .arg(toolchain.join("build.mjs"))
            .arg(p.dir.join("wit"))
            .arg(&tmp)
            .arg(p.dir.join("listener.js"))
            .current_dir(&p.dir),
        "componentize-js",
    )?;
    rename(&tmp, &p.out)
}

/// `GOOS=wasip1 go build -buildmode=c-shared` (a reactor: the host calls the exported handler;
/// `main` never runs; `-checklinkname=0` lets the SDK's allocator reach `runtime.sbrk`), then the
/// core module is made a component in-process (`wasm::componentize`): no wasm-tools, no adapter
/// file.
pub(crate) fn go(p: &Project) -> Result<PathBuf, BuildError> {
    let go = go_binary();
    let core = p.out.with_extension("core.wasm");
    run(
        Command::new(go)
            .args(["build", "-buildmode=c-shared", "-ldflags=-checklinkname=0", "-o"])
            .arg(&core)
            .arg(".")
            .env("GOOS", "wasip1")
            .env("GOARCH", "wasm")
            .current_dir(&p.dir),
        "go build",
    )?;
    let bytes = std::fs::read(&core).map_err(|source| BuildError::Io {
        what: "reading",
        path: core.clone(),
        source,
    })?;
    let component = componentize(&bytes)?;
    let tmp = p.out.with_extension("wasm.tmp");
    std::fs::write(&tmp, component).map_err(|source| BuildError::Io {
        what: "writing",
        path: tmp.clone(),
        source,
    })?;
    rename(&tmp, &p.out)
}

/// The project's Makefile (`make NAME=<dir name>`): clang + wasi-libc, then this very binary's
/// `plugin componentize` (the world embedded, the WASI preview-1 adapter added).
pub(crate) fn c(p: &Project) -> Result<PathBuf, BuildError> {
    let name = p.out.file_stem().unwrap_or_default().to_string_lossy().into_owned();
    let this = std::env::current_exe()
        .map_err(|source| BuildError::Spawn { program: "rmq-wasm (itself)".into(), source })?;
    run(
        Command::new("make")
            .arg(format!("NAME={name}"))
            .arg(format!("RMQ_WASM={}", this.display()))
            .current_dir(&p.dir),
        "make",
    )?;
    Ok(p.out.clone())
}

/// `$GO`, else `go` on PATH, else Go's default install location (`/usr/local/go/bin/go`, which
/// the official tarball's instructions put on PATH only in a login shell).
fn go_binary() -> std::ffi::OsString {
    if let Some(go) = std::env::var_os("GO") {
        return go;
    }
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("go").is_file()));
    let default = Path::new("/usr/local/go/bin/go");
    if !on_path && default.is_file() { default.into() } else { "go".into() }
}

/// `<cache>/toolchains/<name>`, installed by `steps` once: a `.installed` file marks a complete
/// install, and a directory without it (an interrupted install) is started over. Concurrent
/// builds wait for one another on `<name>.lock`.
fn install(
    what: &str,
    name: &str,
    steps: impl FnOnce(&Path) -> Result<(), BuildError>,
) -> Result<PathBuf, BuildError> {
    let base = default_cache_dir().unwrap_or_else(|| std::env::temp_dir().join("rmq-wasm"));
    install_in(&base, what, name, steps)
}

/// [`install`] below `base`.
fn install_in(
    base: &Path,
    what: &str,
    name: &str,
    steps: impl FnOnce(&Path) -> Result<(), BuildError>,
) -> Result<PathBuf, BuildError> {
    let dir = base.join("toolchains").join(name);
    let done = dir.join(".installed");
    if done.is_file() {
        return Ok(dir);
    }
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io { what, path, source }
    };
    // One install at a time per toolchain, across processes: without the lock a second first
    // build took the first's install in progress (no `.installed` yet) for an interrupted one and
    // removed it. The lock goes with the file descriptor, so a killed installer releases it.
    let toolchains = base.join("toolchains");
    std::fs::create_dir_all(&toolchains).map_err(io("creating", &toolchains))?;
    let lock_path = toolchains.join(format!("{name}.lock"));
    let lock = std::fs::File::create(&lock_path).map_err(io("creating", &lock_path))?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        eprintln!("waiting for another build installing {what}…");
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("locking", &lock_path)(e.into()))?;
    }
    if done.is_file() {
        return Ok(dir);
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io("removing the partial install", &dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    eprintln!("installing {what} into {} (first build only)…", dir.display());
    let started = Instant::now();
    steps(&dir)?;
    std::fs::write(&done, what).map_err(io("writing", &done))?;
    eprintln!("installed {what} in {:.1} s", started.elapsed().as_secs_f64());
    Ok(dir)
}

fn copy(from: &Path, to: &Path) -> Result<(), BuildError> {
    let tmp = to.with_extension("wasm.tmp");
    std::fs::copy(from, &tmp).map_err(|source| BuildError::Io {
        what: "copying to",
        path: tmp.clone(),
        source,
    })?;
    rename(&tmp, to).map(drop)
}

/// Moves a finished `.wasm` into place in one step, so a running listener watching it never
/// reads half a file.
fn rename(tmp: &Path, to: &Path) -> Result<PathBuf, BuildError> {
    std::fs::rename(tmp, to).map_err(|source| BuildError::Io {
        what: "renaming to",
        path: to.into(),
        source,
    })?;
    Ok(to.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::plugin::new::write_project;

    /// Two first builds at once (two terminals, a CI matrix): the second must not take the
    /// first's install in progress for an interrupted one and delete it under its feet, nor
    /// install a second time.
    #[test]
    fn a_second_install_waits_for_the_first_instead_of_removing_it() {
        use std::sync::mpsc::channel;
        use std::time::Duration;
        let base = tempfile::tempdir().unwrap();
        let base = base.path().to_path_buf();
        let (started, first_started) = channel();
        let (go, first_may_finish) = channel::<()>();
        let first = std::thread::spawn({
            let base = base.clone();
            move || {
                install_in(&base, "tool", "tool-1", |dir| {
                    std::fs::write(dir.join("half-done"), "").unwrap();
                    started.send(()).unwrap();
                    let _ = first_may_finish.recv_timeout(Duration::from_secs(10));
                    assert!(dir.join("half-done").is_file(), "the install in progress was removed");
                    Ok(())
                })
            }
        });
        first_started.recv_timeout(Duration::from_secs(10)).unwrap();
        let (ran, second_ran) = channel();
        let second = std::thread::spawn(move || {
            install_in(&base, "tool", "tool-1", |_| {
                ran.send(()).unwrap();
                Ok(())
            })
        });
        // Unlocked, the second install runs its steps at once; locked, never.
        let raced = second_ran.recv_timeout(Duration::from_millis(300)).is_ok();
        go.send(()).unwrap();
        let first = first.join();
        let second = second.join().unwrap().unwrap();
        assert!(!raced, "a second install ran while the first was in progress");
        assert!(first.is_ok_and(|r| r.is_ok()), "the first install failed");
        assert!(second.join("half-done").is_file() && second.join(".installed").is_file());
    }

    #[test]
    fn the_language_is_recognised_from_the_project_files() {
        let dir = tempfile::tempdir().unwrap();
        let e = detect(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is not a listener project") && e.contains("app.py (Python)"), "{e}");
        for l in LANGUAGES {
            let root = dir.path().join(l.title);
            write_project(l, "x", &root).unwrap();
            assert_eq!(detect(&root).unwrap().lang, l.lang);
        }
    }
}
