//! The application layer: the subcommands, wiring the command line to the library and printing.
//! Nothing below it knows it exists.

mod bench;
pub mod cli;
mod devices;
mod eval;
mod predict;
mod report;
pub mod session;
mod train;

use std::path::{Path, PathBuf};

use cli::Command;

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Train(args) => train::run(&args),
        Command::Eval(args) => eval::run(&args),
        Command::Predict(args) => predict::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Devices => devices::run(),
    }
}

/// A path as given, or, when it is the default relative `default` and missing here, the copy
/// bundled with the sources (so the defaults work from any folder).
pub fn bundled(arg: &Path, default: &str) -> PathBuf {
    let copy = Path::new(env!("CARGO_MANIFEST_DIR")).join(default);
    if arg == Path::new(default) && !arg.exists() && copy.exists() { copy } else { arg.to_path_buf() }
}
