//! The `hookwise` command: see [`hookwise::cli`].

fn main() -> std::process::ExitCode {
    hookwise::cli::run()
}
