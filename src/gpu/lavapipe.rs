//! The rules for Mesa's lavapipe (llvmpipe): its vector width, its Mesa version
//! (read from the driver library), its shader cache and its worker threads.
//! docs/PERFORMANCE.md holds the measurements behind each rule.

/// On x86 CPUs with AVX-512, asks Mesa's llvmpipe (lavapipe) for 512-bit vectors unless
/// LP_NATIVE_VECTOR_WIDTH is already set, where the installed lavapipe is one whose wide
/// vectors were measured to pay (`wide_vectors_pay`): its subgroups then have 16 lanes
/// instead of 8, and the GEMM and convolution kernels are built for 16
/// (`kernels::subgroup_lanes`). On a 2-core Zen 5 (`elbo profile`, batch 128) that took
/// Mesa 22.3's MLP VAE step from 6.9 to 5.7 ms and the convolutional one's from 41 to
/// 36 ms; Mesa 25.0's MLP step went the other way, 8.9 -> 20 ms. Other drivers ignore the
/// variable. Wherever the width is set, also keeps lavapipe's shader cache apart for it
/// (`shader_cache_for_width`). Returns whether it set the width. Call it before the first
/// `Gpu::new` (Mesa reads the variables when the Vulkan loader opens it) and before other
/// threads start, as for any change to the environment.
pub fn prefer_wide_cpu_vectors() -> bool {
    let mut set = false;
    #[cfg(target_arch = "x86_64")]
    if std::env::var_os(LP_VECTOR_WIDTH).is_none()
        && std::arch::is_x86_feature_detected!("avx512f")
        && lavapipe_mesa_version().is_some_and(wide_vectors_pay)
    {
        std::env::set_var(LP_VECTOR_WIDTH, "512");
        set = true;
        WIDTH_SET.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if let Some(dir) = shader_cache_for_width() {
        // Mesa creates only the last directory of the path; without it Mesa caches nothing
        let _ = std::fs::create_dir_all(&dir);
        std::env::set_var(SHADER_CACHE_DIR, dir);
    }
    set
}

/// Whether `prefer_wide_cpu_vectors` set LP_NATIVE_VECTOR_WIDTH in this process.
static WIDTH_SET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether LP_NATIVE_VECTOR_WIDTH came from the environment rather than from
/// `prefer_wide_cpu_vectors`.
pub fn vector_width_given() -> bool {
    std::env::var_os(LP_VECTOR_WIDTH).is_some() && !WIDTH_SET.load(std::sync::atomic::Ordering::Relaxed)
}

/// The newest Mesa major version whose lavapipe was measured to favour 512-bit vectors
/// (`wide_vectors_pay`) and Adam's moments in textures (`Gpu::texel_moments_pay`):
/// 22.3 does both; 25.0 does neither; versions between were not measured.
pub const NEWEST_WIDE_MESA: u32 = 22;

/// For lavapipe adapters: llvmpipe's vector width and who chose it, as `elbo devices`
/// prints it.
pub fn vector_width_note(info: &wgpu::AdapterInfo) -> Option<String> {
    if !info.driver.contains("llvmpipe") {
        return None;
    }
    let mesa = mesa_version_in(info.driver_info.as_bytes());
    let mesa = mesa.map_or("this Mesa".to_string(), |(a, b)| format!("Mesa {a}.{b}"));
    let why = if WIDTH_SET.load(std::sync::atomic::Ordering::Relaxed) {
        format!("chosen by elbo: 512 bits pay on {mesa}; set LP_NATIVE_VECTOR_WIDTH to choose")
    } else if vector_width_given() {
        "LP_NATIVE_VECTOR_WIDTH from the environment".to_string()
    } else {
        format!(
            "{mesa}'s own: elbo asks for 512 bits only from Mesa {NEWEST_WIDE_MESA} and older, on CPUs with \
             AVX-512; set LP_NATIVE_VECTOR_WIDTH to choose"
        )
    };
    let bits = ["512 bits", "256 bits", "128 bits"].into_iter().find(|b| info.name.contains(b)).unwrap_or("unknown");
    Some(format!("vectors: {bits} ({why})"))
}

/// Whether llvmpipe's 512-bit vectors pay in lavapipe of Mesa `version` (major, minor):
/// measured on Mesa 22.3 (faster) and 25.0 (2.3 times slower: its subgroup kernels at 16
/// lanes ran 5 times slower than at 8); versions between were not measured and keep
/// Mesa's own width.
pub fn wide_vectors_pay(version: (u32, u32)) -> bool {
    version.0 <= NEWEST_WIDE_MESA
}

/// The Mesa version (major, minor) of the lavapipe that the Vulkan loader will open,
/// found before it is opened (the vector width must be chosen before that): the driver
/// manifests the loader reads (`lavapipe_manifests`), the library a lavapipe one names,
/// and the "Mesa X.Y" its driver-info string starts with. None where any step fails.
pub fn lavapipe_mesa_version() -> Option<(u32, u32)> {
    lavapipe_manifests().iter().find_map(|m| {
        let text = std::fs::read_to_string(m).ok()?;
        let lib = manifest_library(&text)?;
        if !lib.contains("lvp") {
            return None;
        }
        mesa_version_in(&std::fs::read(resolve_library(m, &lib)?).ok()?)
    })
}

/// The Vulkan driver manifests (ICD JSON files) the loader reads: those VK_DRIVER_FILES or
/// VK_ICD_FILENAMES lists (files or folders), else the standard folders' `icd.d`.
fn lavapipe_manifests() -> Vec<std::path::PathBuf> {
    let listed = std::env::var("VK_DRIVER_FILES").or_else(|_| std::env::var("VK_ICD_FILENAMES")).ok();
    let places: Vec<std::path::PathBuf> = match listed {
        Some(list) => std::env::split_paths(&list).collect(),
        None => {
            let mut dirs = vec![];
            let data = std::env::var("XDG_DATA_DIRS").unwrap_or_else(|_| "/usr/local/share:/usr/share".into());
            dirs.extend(std::env::split_paths(&data).map(|d| d.join("vulkan/icd.d")));
            dirs.push("/etc/vulkan/icd.d".into());
            dirs
        }
    };
    let mut files = vec![];
    for p in places {
        match std::fs::read_dir(&p) {
            Ok(entries) => {
                let mut found: Vec<_> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
                found.sort();
                files.extend(found.into_iter().filter(|f| f.extension().is_some_and(|x| x == "json")));
            }
            Err(_) => files.push(p),
        }
    }
    files
}

/// The `library_path` of a driver manifest.
pub fn manifest_library(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    Some(v["ICD"]["library_path"].as_str()?.to_string())
}

/// A manifest's library on disk: an absolute path as it is, a relative one from the
/// manifest's folder, a bare file name in the system's library folders.
fn resolve_library(manifest: &std::path::Path, lib: &str) -> Option<std::path::PathBuf> {
    let path = std::path::Path::new(lib);
    if path.is_absolute() {
        return Some(path.to_path_buf());
    }
    if lib.contains('/') {
        return Some(manifest.parent()?.join(path));
    }
    let dirs = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib"];
    dirs.iter().map(|d| std::path::Path::new(d).join(lib)).find(|p| p.exists())
}

/// The first "Mesa X.Y" in `bytes` (a Mesa driver's library holds its version so).
pub fn mesa_version_in(bytes: &[u8]) -> Option<(u32, u32)> {
    let number = |b: &[u8]| -> Option<(u32, usize)> {
        let n = b.iter().take_while(|c| c.is_ascii_digit()).count();
        Some((std::str::from_utf8(&b[..n]).ok()?.parse().ok()?, n))
    };
    bytes.windows(5).enumerate().filter(|(_, w)| *w == b"Mesa ").find_map(|(i, _)| {
        let rest = &bytes[i + 5..];
        let (major, n) = number(rest)?;
        let (minor, _) = number(rest.get(n + 1..)?).filter(|_| rest.get(n) == Some(&b'.'))?;
        Some((major, minor))
    })
}

/// Mesa's shader cache directory.
pub const SHADER_CACHE_DIR: &str = "MESA_SHADER_CACHE_DIR";

/// Where LP_NATIVE_VECTOR_WIDTH is set, a shader cache directory of that width's own:
/// `elbo-lavapipe-<bits>` in MESA_SHADER_CACHE_DIR, else in Mesa's default place
/// ($XDG_CACHE_HOME, else ~/.cache). Mesa 22.3 keys its cache without the vector width,
/// so a kernel compiled at 256 bits came back from the cache at 512 (and the reverse)
/// with the other width's subgroups: a kernel written for 8 lanes passed its tests at 16
/// on a machine whose cache held its 8-lane build, and failed on a fresh one.
pub fn shader_cache_for_width() -> Option<std::path::PathBuf> {
    let var = |name: &str| std::env::var_os(name).map(std::path::PathBuf::from);
    let bits = std::env::var(LP_VECTOR_WIDTH).ok()?;
    let home = var("HOME").map(|h| h.join(".cache"));
    shader_cache_dir(bits.trim(), var(SHADER_CACHE_DIR).or(var("XDG_CACHE_HOME")).or(home)?)
}

/// `elbo-lavapipe-<bits>` in `base`, or beside it where `base` is already such a directory
/// (a child process inherits its parent's).
pub fn shader_cache_dir(bits: &str, base: std::path::PathBuf) -> Option<std::path::PathBuf> {
    let base = match base.file_name().and_then(|n| n.to_str()) {
        Some(n) if n.starts_with("elbo-lavapipe-") => base.parent()?.to_path_buf(),
        _ => base,
    };
    Some(base.join(format!("elbo-lavapipe-{bits}")))
}

/// Mesa llvmpipe's vector width in bits (128, 256 or 512).
pub const LP_VECTOR_WIDTH: &str = "LP_NATIVE_VECTOR_WIDTH";

/// Mesa llvmpipe's worker threads (its default: one a logical CPU). Two a CPU
/// were no faster (docs/PERFORMANCE.md, "What was tried and dropped").
pub const LP_THREADS: &str = "LP_NUM_THREADS";

/// llvmpipe's worker threads in this process, counted where the system lists a
/// process's threads by name; None elsewhere. What it counts are the threads named
/// llvmpipe-N, which are the rasterizer's (Mesa 22.3 leaves the compute pool's workers
/// unnamed: they show the process's name). Both pools get `LP_NUM_THREADS` threads
/// (`lp_cs_tpool_create(num_threads)`), so the count is the compute workers' too.
pub fn llvmpipe_threads() -> Option<usize> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let names = tasks.filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok());
    Some(names.filter(|name| name.starts_with("llvmpipe-")).count())
}

/// The adapter line's note on threads: lavapipe's workers, and the spinning threads that
/// keep the processors awake (`awake`), where there are any ("" for neither).
pub fn threads_note(lavapipe: Option<usize>, awake: Option<usize>) -> String {
    let mut note = lavapipe.map(|n| format!(", {n} threads")).unwrap_or_default();
    if let Some(n) = awake.filter(|&n| n > 0) {
        note += &format!(", {}", crate::gpu::awake::describe(n));
    }
    note
}
