/// mimalloc rather than the C library's allocator: the query routes allocate many small, short-lived
/// buffers, where glibc's malloc and free showed up in profiles (figures in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    // A `.env` beside the binary's working directory fills in what the environment lacks.
    let _ = dotenvy::dotenv();
    let cli = calry_hooks::config::Cli::from_env();
    if let Err(err) = calry_hooks::cli::run(cli).await {
        eprintln!("calry-hooks: {err}");
        std::process::exit(1);
    }
}
