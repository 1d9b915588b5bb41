//! `rmq-wasm plugin …`: the plugin author's verbs.

mod build;
pub(crate) mod dev;
mod lang;
mod new;

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
}

pub(crate) fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::New(args) => new::new(&args),
        PluginCommand::Build(args) => build::build(&args),
        PluginCommand::Componentize { core, out } => {
            let bytes =
                std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
            let component = componentize(&bytes).with_context(|| core.display().to_string())?;
            // Into place in one rename: a listener watching `out` never reads half a file.
            let tmp = out.with_extension("wasm.tmp");
            std::fs::write(&tmp, &component)
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
            println!("{}: component of {} KiB", out.display(), component.len() / 1024);
            Ok(())
        }
    }
}
