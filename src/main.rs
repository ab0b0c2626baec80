use clap::Parser;

use braid::cli::Cli;

fn main() -> std::process::ExitCode {
    let arenas = braid::allocator::limit_arenas();
    let cli = Cli::parse();
    braid::logging::init(cli.log_format);
    tracing::debug!(?arenas, "malloc arenas limited to one per core");
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
