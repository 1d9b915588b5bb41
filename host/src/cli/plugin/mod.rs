//! `rmq-wasm plugin …`: the plugin author's verbs.

mod build;
mod lang;
mod new;

use clap::Subcommand;

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
}

pub(crate) fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::New(args) => new::new(&args),
        PluginCommand::Build(args) => build::build(&args),
    }
}
