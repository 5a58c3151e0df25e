//! The `gpu-mnist` command: parses the command line and runs it (`app`); the library does the work.

// Checks are written `!(diff <= tolerance)` on purpose: a NaN difference must fail them.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

mod app;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Like other Unix tools, end quietly when the reader of stdout goes away (`| head`) instead
    // of failing to print. Rust ignores SIGPIPE by default; restore the default action.
    #[cfg(unix)]
    // SAFETY: the program has one thread here, and SIG_DFL is a valid action for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Mesa's Vulkan drivers warn on stderr without it; nothing here needs a runtime dir.
        // SAFETY: the program has one thread here, before anything reads the environment.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    match app::run(app::cli::Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<app::session::Interrupted>() => {
            eprintln!("{e}");
            std::process::ExitCode::from(130)
        }
        Err(e) => {
            // One line with the context chain, never a backtrace: errors here are about input.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
