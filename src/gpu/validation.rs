//! The Khronos validation layer, on request: `ELBO_VALIDATE=1` (or [`enable`] before
//! the first device opens) turns on wgpu's validation flag, which loads
//! `VK_LAYER_KHRONOS_validation` under the Vulkan backend. The layer's messages reach
//! wgpu through its debug messenger and leave it as `log` records; [`Collector`] keeps
//! the validation ones, and `Gpu::check` turns them into an error, so a kernel test or
//! a training run that misuses the API fails where it happens.
//!
//! lavapipe forgives misuse that vendors' drivers punish (a missing barrier, a binding
//! past a buffer's end, a format used outside its features); the layer does not.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The environment variable that asks for the layer (1, true or yes).
pub const ENV: &str = "ELBO_VALIDATE";

/// The layer's name, as the Vulkan loader knows it.
pub const LAYER: &str = "VK_LAYER_KHRONOS_validation";

static ENABLED: AtomicBool = AtomicBool::new(false);
static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Asks for the layer in this process (the tests do), as `ELBO_VALIDATE=1` does.
/// Effective for devices opened afterwards; child processes need the variable.
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// Whether this process asked for the layer.
pub fn requested() -> bool {
    ENABLED.load(Ordering::SeqCst)
        || std::env::var(ENV).is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

/// The layer's manifest, where the loader looks for it on this system (the
/// directories of the Vulkan loader's search, and `VK_LAYER_PATH`/`VK_ADD_LAYER_PATH`).
pub fn layer_manifest() -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = Vec::new();
    for var in ["VK_LAYER_PATH", "VK_ADD_LAYER_PATH"] {
        if let Some(v) = std::env::var_os(var) {
            dirs.extend(std::env::split_paths(&v));
        }
    }
    let data = std::env::var("XDG_DATA_DIRS").unwrap_or_else(|_| "/usr/local/share:/usr/share".into());
    let mut roots: Vec<std::path::PathBuf> = vec!["/etc".into()];
    roots.extend(data.split(':').filter(|d| !d.is_empty()).map(std::path::PathBuf::from));
    if let Some(home) = std::env::var_os("XDG_DATA_HOME")
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share").into_os_string()))
    {
        roots.push(home.into());
    }
    dirs.extend(roots.into_iter().map(|r| r.join("vulkan/explicit_layer.d")));
    let files = dirs.into_iter().filter_map(|d| std::fs::read_dir(d).ok()).flatten().filter_map(|e| e.ok());
    files.map(|e| e.path()).find(|p| {
        p.extension().is_some_and(|x| x == "json")
            && std::fs::read_to_string(p).is_ok_and(|text| text.contains(&format!("\"{LAYER}\"")))
    })
}

/// Routes wgpu's log records to [`MESSAGES`] (the layer's validation messages, errors
/// and warnings) and to standard error (every other warning or error wgpu logs).
/// Installed once, when the first device with the layer opens; a logger the
/// embedding program installed first stays, and then nothing is collected.
struct Collector;

static COLLECTOR: Collector = Collector;

impl log::Log for Collector {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() <= log::Level::Warn && meta.target().starts_with("wgpu")
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let text = record.args().to_string();
        // wgpu-hal's messenger writes "VALIDATION [VUID-... (0x...)]\n\tmessage" for the
        // layer's validation messages, then lines of labels and objects
        if record.target().starts_with("wgpu_hal::vulkan") && text.contains("VALIDATION") {
            MESSAGES.lock().unwrap_or_else(|e| e.into_inner()).push(text.replace("\n\t", ": "));
        } else if !text.starts_with('\t') {
            eprintln!("wgpu {}: {text}", record.level().as_str().to_lowercase());
        }
    }

    fn flush(&self) {}
}

/// Installs [`Collector`] (once; see there).
pub(crate) fn install_logger() {
    if log::set_logger(&COLLECTOR).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// The layer's messages since the last call, oldest first.
pub fn take_messages() -> Vec<String> {
    std::mem::take(&mut *MESSAGES.lock().unwrap_or_else(|e| e.into_inner()))
}
