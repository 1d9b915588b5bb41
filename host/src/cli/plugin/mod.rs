//! `rmq-wasm plugin …`: the plugin author's verbs. One file per verb; [`PluginCommand`] is the
//! list, so a new verb is a variant and a file.

mod build;
mod check;
pub(crate) mod dev;
mod lang;
mod new;
mod test;

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use crate::wasm::componentize::componentize;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Create a listener project that builds anywhere with this binary and the language's
    /// toolchain (the WIT and the SDK come with it).
    #[command(after_help = "Examples:\n  rmq-wasm plugin new --lang python my-listener\n  \
                            rmq-wasm plugin new --lang rust --dir ~/src my-filter")]
    New(new::NewArgs),
    /// Build a listener project into NAME.wasm and validate it against the rmq:listener world.
    #[command(
        after_help = "Examples:\n  rmq-wasm plugin build              # the project in .\n  \
                            rmq-wasm plugin build my-listener"
    )]
    Build(build::BuildArgs),
    /// Make a core Wasm module (Go `GOOS=wasip1 -buildmode=c-shared`, C with wasi-libc and
    /// `-mexec-model=reactor`) a component of the `rmq:listener@0.2.0` world, with the WASI
    /// preview-1 reactor adapter this binary carries: no `wasm-tools` needed (`plugin build`
    /// does this step itself).
    #[command(after_help = "Examples:\n  \
        GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o core.wasm .\n  \
        rmq-wasm plugin componentize core.wasm --out router.wasm")]
    Componentize {
        /// The core module.
        core: PathBuf,
        /// Where to write the component.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Does a component fit `rmq:listener@0.2.0`; its exports, imports and needed grants.
    ///
    /// Loads it with the host's own engine (compile, link, type check: what a listener's load
    /// does). A misfit names each item at fault; exit status 1 when it does not fit.
    #[command(after_help = check::EXAMPLES)]
    Check(check::CheckArgs),
    /// Replay a message fixture through a component, with no cluster; check expected outcomes.
    ///
    /// Runs the production listener path (same engine, limits, outcome mapping, poison
    /// isolation) and prints per message its outcome and per call the fuel, time, the plugin's
    /// log lines and its sends (recorded, never sent).
    #[command(after_help = test::EXAMPLES)]
    Test(test::TestArgs),
}

pub(crate) async fn run(command: PluginCommand) -> anyhow::Result<()> {
    use tokio::task::block_in_place;
    // Builds run toolchains and compiles that take seconds: off the async workers.
    match command {
        PluginCommand::Check(args) => check::check(args).await,
        PluginCommand::Test(args) => test::test(args).await,
        PluginCommand::New(args) => block_in_place(|| new::new(&args)),
        PluginCommand::Build(args) => block_in_place(|| build::build(&args)),
        PluginCommand::Componentize { core, out } => {
            block_in_place(|| componentize_file(&core, &out))
        }
    }
}

/// `plugin componentize CORE --out OUT`.
fn componentize_file(core: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = componentize(&bytes).with_context(|| core.display().to_string())?;
    // Into place in one rename: a listener watching `out` never reads half a file.
    let tmp = out.with_extension("wasm.tmp");
    std::fs::write(&tmp, &component).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    println!("{}: component of {} KiB", out.display(), component.len() / 1024);
    Ok(())
}
