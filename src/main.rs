use clap::Parser;

/// mimalloc rather than the C library's allocator: in the query benchmark glibc's malloc and free
/// took 14 % of the service's CPU, and mimalloc gave 6–18 % more queries/s (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    // A `.env` beside the binary's working directory fills in what the environment lacks.
    let _ = dotenvy::dotenv();
    let cli = calry_hooks::config::Cli::parse();
    if let Err(err) = calry_hooks::cli::run(cli).await {
        eprintln!("calry-hooks: {err}");
        std::process::exit(1);
    }
}
