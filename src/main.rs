//! The `synk` command.

use std::process::ExitCode;

use synk::cli::Cli;
use synk::report::{self, Event, Reporter};
use synk::sync::{self, EXIT_UNSYNCED, EXIT_USAGE};

fn main() -> ExitCode {
    keep_chunk_buffers();
    let cli = match Cli::parse_from_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE as u8 } else { 0 });
        }
    };
    if let Some(shell) = cli.completions {
        Cli::write_completions(shell, &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Some(ahead) = cli.serve {
        return match synk::serve::run(ahead.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                report::notice(Event::ServeFailed {
                    error: e.to_string(),
                });
                ExitCode::from(EXIT_UNSYNCED as u8)
            }
        };
    }
    init_tracing(cli.verbose);
    let rep = Reporter::new(cli.verbose, cli.quiet).with_json(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            rep.emit(Event::NoRuntime {
                error: e.to_string(),
            });
            return ExitCode::from(EXIT_UNSYNCED as u8);
        }
    };
    let code = runtime.block_on(sync::run(cli, &rep));
    ExitCode::from(code as u8)
}

/// Copies move 256 KiB chunks through a buffer or two each, allocated and freed per chunk.
/// glibc's allocator would map each one afresh and unmap it on free, or give the top of the
/// heap back to the kernel between chunks, so every chunk paid a page fault per 4 KiB: a
/// million faults for 1.5 GB streamed. Buffers under 1 MiB come from the heap and up to
/// 8 MiB of free heap stays mapped; bigger allocations (a large tree's tables) are still
/// mapped and unmapped on their own.
fn keep_chunk_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// `-vv` (or `RUST_LOG`) turns on debug tracing on stderr.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose >= 2 {
        "synk=debug"
    } else {
        "synk=warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colours for a terminal only: a log file or a pipe gets plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
