/// mimalloc rather than the C library's allocator: the query routes allocate many small, short-lived
/// buffers, where glibc's malloc and free showed up in profiles (figures in docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    if let Err(err) = calry_hooks::config::read_dot_env() {
        eprintln!("calry-hooks: .env: {err}");
        std::process::exit(2);
    }
    let cli = calry_hooks::config::Cli::from_env();
    if let Err(err) = calry_hooks::cli::run(cli).await {
        eprintln!("calry-hooks: {err}");
        if let Some(hint) = calry_hooks::error::hint(&*err) {
            eprintln!("calry-hooks: PostgreSQL's hint: {hint}");
        }
        let unusable = err.is::<calry_hooks::config::Unusable>();
        std::process::exit(if unusable { 2 } else { 1 });
    }
}
