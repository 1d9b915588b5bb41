//! `rmq-wasm plugin …`: the plugin author's verbs. One file per verb; [`PluginCommand`] is the
//! list, so a new verb is a variant and a file.

mod check;
mod test;

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
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
    match command {
        PluginCommand::Check(args) => check::check(args).await,
        PluginCommand::Test(args) => test::test(args).await,
    }
}
