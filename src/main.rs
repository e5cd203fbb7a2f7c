//! The `elbo` command: see src/cli/ for its subcommands.

mod cli;

fn main() {
    // Mesa's device-select layer only prints "XDG_RUNTIME_DIR is invalid" on
    // headless machines; wgpu lists every adapter without it.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    elbo::gpu::prefer_wide_cpu_vectors();
    let code = match cli::run() {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<elbo::train::Interrupted>().is_some() => {
            eprintln!("{e}");
            130
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}
