//! The application layer: the subcommands, wiring the command line to the library and printing.
//! Nothing below it knows it exists.

mod bench;
pub mod cli;
mod devices;
mod eval;
mod export;
mod info;
mod predict;
mod report;
mod serve;
pub mod session;
mod train;

use cli::Command;

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Export(args) => export::run(&args),
        Command::Info(args) => info::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Devices => devices::run(),
    }
}
