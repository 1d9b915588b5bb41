//! `rmq-wasm plugin …`: the plugin author's verbs. One file per verb; [`PluginCommand`] is the
//! list, so a new verb is a variant and a file.

mod check;
mod test;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Load a component with the host's engine: does it implement `rmq:listener@0.2.0`, what does
    /// it export and import, which `[[listener]]` grants would it need. Exit status 1 when it
    /// does not fit.
    #[command(after_help = check::EXAMPLES)]
    Check(check::CheckArgs),
    /// Replay a message fixture through the component on the production listener path, with no
    /// cluster: per message its outcome, fuel, time, log lines and (recorded, never sent)
    /// sends; checks expected outcomes.
    #[command(after_help = test::EXAMPLES)]
    Test(test::TestArgs),
}

pub(crate) async fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Check(args) => check::check(args).await,
        PluginCommand::Test(args) => test::test(args).await,
    }
}
