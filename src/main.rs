use clap::Parser;

use braid::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Only the commands whose work is Polars batches: the speed layer and the sink allocate on
    // one thread and free on another, where fewer arenas would mean more lock waits.
    let arenas = match cli.command {
        Command::Batch(_) | Command::Jobs(_) => braid::allocator::limit_arenas(),
        _ => None,
    };
    braid::logging::init(cli.log_format);
    if let Some(arenas) = arenas {
        tracing::debug!(arenas, "malloc arenas limited to one per core");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(braid::commands::run(cli)) {
        Ok(code) => code,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
