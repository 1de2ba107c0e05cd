use clap::Parser;

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
