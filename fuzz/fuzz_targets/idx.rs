//! The IDX reader on arbitrary bytes, plain and gzipped: errors, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = elbo::data::idx::parse_idx(data);
    let path = std::env::temp_dir().join(format!("elbo-fuzz-idx-{}.gz", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = elbo::data::idx::read_idx(&path);
    }
});
