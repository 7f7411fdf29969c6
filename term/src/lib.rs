//! What a command prints. A reader that stops early (`jianka-node status | head`,
//! `jianka-hub report | head`) closes the pipe; `println!` would then panic ("failed printing to
//! stdout", exit 101), so results and messages go through these writers, which return the
//! write's error, and each binary's `main` ends quietly on a closed pipe. The workspace forbids
//! `unsafe`, so SIGPIPE cannot be reset to its default instead.

use std::io::Write;

/// Writes one line of results to stdout.
pub fn line(args: std::fmt::Arguments) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Writes one line of messages (row errors, refusals, what to do next) to stderr.
pub fn message(args: std::fmt::Arguments) -> std::io::Result<()> {
    let mut err = std::io::stderr().lock();
    err.write_fmt(args)?;
    err.write_all(b"\n")
}

/// Whether an error is the reader of stdout or stderr having gone away.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// `println!` that returns the write's error instead of panicking on a closed pipe.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::line(format_args!($($arg)*))
    };
}

/// `eprintln!` that returns the write's error instead of panicking on a closed pipe.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::message(format_args!($($arg)*))
    };
}
