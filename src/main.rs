/// mimalloc rather than the C library's allocator: the query routes allocate many small, short-lived
/// buffers, where glibc's malloc and free showed up in profiles (figures in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    // A `.env` in the working directory (not above it) fills in what the environment lacks. One
    // that cannot be read whole stops start-up: the lines after a bad one would be lost.
    match dotenvy::from_path(".env") {
        Err(err) if !err.not_found() => {
            eprintln!("calry-hooks: .env: {err}");
            std::process::exit(2);
        }
        _ => {}
    }
    let cli = calry_hooks::config::Cli::from_env();
    if let Err(err) = calry_hooks::cli::run(cli).await {
        eprintln!("calry-hooks: {err}");
        if let Some(hint) = calry_hooks::error::hint(&*err) {
            eprintln!("calry-hooks: PostgreSQL's hint: {hint}");
        }
        std::process::exit(1);
    }
}
