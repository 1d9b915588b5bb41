//! `rmq-wasm plugin …`: the plugin author's verbs.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use crate::wasm::componentize::componentize;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Make a core Wasm module (Go `GOOS=wasip1 -buildmode=c-shared`, C with wasi-libc and
    /// `-mexec-model=reactor`) a component of the `rmq:listener@0.2.0` world, with the WASI
    /// preview-1 reactor adapter this binary carries: no `wasm-tools` needed.
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

pub(crate) fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Componentize { core, out } => {
            let bytes =
                std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
            let component = componentize(&bytes).with_context(|| core.display().to_string())?;
            std::fs::write(&out, &component)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("{}: component of {} KiB", out.display(), component.len() / 1024);
        }
    }
    Ok(())
}
