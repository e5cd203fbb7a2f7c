//! `cargo bench`: the same measurements as `elbo bench`, on the default adapter,
//! so that a change's effect is measured the same way each time.
//! Set ELBO_BENCH_JSON=FILE to keep the report for `elbo bench --compare`.

fn main() -> anyhow::Result<()> {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
    // the vector width `elbo bench` runs lavapipe at
    elbo::gpu::prefer_wide_cpu_vectors();
    // `cargo bench -- <filter>` passes arguments; `cargo test --benches` passes --bench: run quickly then.
    let quick = std::env::args().any(|a| a == "--test");
    let gpu = elbo::gpu::Gpu::new(&Default::default())?;
    let opts = if quick {
        elbo::bench::BenchOptions {
            batches: vec![32],
            conv_batches: vec![8],
            rgb64_batches: vec![4],
            steps: 3,
            squares: vec![64],
            ..Default::default()
        }
    } else {
        elbo::bench::BenchOptions::default()
    };
    let report = elbo::bench::bench(&gpu, &opts, &|what| eprintln!("bench: {what}"))?;
    print!("{}", elbo::bench::format_bench(&report));
    if let Some(path) = std::env::var_os("ELBO_BENCH_JSON") {
        elbo::write_atomic(std::path::Path::new(&path), serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(())
}
