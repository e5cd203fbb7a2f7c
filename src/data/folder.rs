//! Any folder of PNG/JPEG images as a dataset, decoded in parallel.

use super::Dataset;
use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

/// File extensions read as images, compared without regard to case.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Every PNG or JPEG file under `dir`, recursively (symbolic links to folders are not followed).
fn image_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        if entry.file_type().with_context(|| format!("cannot inspect {}", path.display()))?.is_dir() {
            image_files(&path, out)?;
        } else if path.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// One decoded image: its size in the file, and its bytes after conversion and resizing.
struct Decoded {
    native: (u32, u32),
    pixels: Vec<u8>,
}

/// Decodes one file (the format is guessed from its bytes, not its name), converts it to
/// `channels` and resizes it to `size` when given.
fn decode_image(path: &Path, channels: usize, size: Option<(usize, usize)>) -> Result<Decoded> {
    let img = image::ImageReader::open(path)?.with_guessed_format()?.decode()?;
    let native = (img.width(), img.height());
    let target = size.map(|(w, h)| (w as u32, h as u32)).filter(|&t| t != native);
    let pixels = if channels == 1 {
        let g = img.to_luma8();
        match target {
            Some((w, h)) => image::imageops::resize(&g, w, h, FilterType::Triangle).into_raw(),
            None => g.into_raw(),
        }
    } else {
        let c = img.to_rgb8();
        match target {
            Some((w, h)) => image::imageops::resize(&c, w, h, FilterType::Triangle).into_raw(),
            None => c.into_raw(),
        }
    };
    Ok(Decoded { native, pixels })
}

/// Decodes `files` on every core, keeping their order.
fn decode_all(files: &[PathBuf], channels: usize, size: Option<(usize, usize)>) -> Vec<Result<Decoded>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len()).max(1);
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|f| decode_image(f, channels, size)).collect::<Vec<_>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("an image decoder thread panicked")).collect()
    })
}

/// Every PNG and JPEG file under `dir` (recursively, in path order), as greyscale
/// (`channels` = 1) or RGB (3), resized to `size` = (width, height) when given,
/// else all of one size; split at random (by `seed`) into a training set and a
/// test set of `max(1, round(len * test_fraction))` images. Files that do not
/// decode are skipped with a warning on stderr, unless more than half of them fail.
pub fn load_image_folder(
    dir: &Path,
    channels: usize,
    size: Option<(usize, usize)>,
    test_fraction: f64,
    seed: u64,
) -> Result<(Dataset, Dataset)> {
    if channels != 1 && channels != 3 {
        bail!("{channels} channels asked for; images are loaded as greyscale (1) or RGB (3)");
    }
    if test_fraction.is_nan() || test_fraction <= 0.0 || test_fraction >= 1.0 {
        bail!("test fraction {test_fraction} is not between 0 and 1 (exclusive); 0.1 holds out a tenth of the images");
    }
    if let Some((w, h)) = size {
        if w == 0 || h == 0 || w > u32::MAX as usize || h > u32::MAX as usize {
            bail!("image size {w}x{h} is not a valid size; give a width and a height of at least 1 pixel");
        }
    }
    let files = list_images(dir)?;
    let mut images = decode_readable(dir, &files, channels, size)?;
    let (width, height) = match size {
        Some(s) => s,
        None => common_size(dir, &images)?,
    };
    let len = images.len();
    if len < 2 {
        bail!(
            "{} holds only {len} readable image; a training set and a test set need at least 2 images",
            dir.display()
        );
    }

    // Shuffle, then the last images of the permutation are the test set.
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let n_test = ((len as f64 * test_fraction).round() as usize).clamp(1, len - 1);
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(|| dir.canonicalize().ok()?.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "images".to_string());
    let image_len = width * height * channels;
    let mut take = |name: String, picks: &[usize]| {
        let mut pixels = Vec::with_capacity(picks.len() * image_len);
        for &i in picks {
            pixels.extend_from_slice(&std::mem::take(&mut images[i].1.pixels));
        }
        Dataset { name, width, height, channels, pixels, labels: None, len: picks.len() }
    };
    let train = take(format!("{folder}-train"), &order[..len - n_test]);
    let test = take(format!("{folder}-test"), &order[len - n_test..]);
    Ok((train, test))
}

/// Every PNG and JPEG file under `dir`, sorted; an error that says what to do when the
/// folder is missing, not a folder, or holds none.
fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        bail!("image folder {} does not exist; expected a folder of PNG or JPEG images, check the path", dir.display());
    }
    if !dir.is_dir() {
        bail!("{} is not a folder; expected a folder of PNG or JPEG images (searched recursively)", dir.display());
    }
    let mut files = Vec::new();
    image_files(dir, &mut files)?;
    files.sort();
    if files.is_empty() {
        bail!(
            "{} holds no PNG or JPEG file (looked for .png, .jpg and .jpeg in it and its subfolders); \
             put the images there or point at the folder that holds them",
            dir.display()
        );
    }
    Ok(files)
}

/// The files decoded, the failures set aside with a warning: a few are forgiven, a
/// majority is not.
fn decode_readable<'f>(
    dir: &Path,
    files: &'f [PathBuf],
    channels: usize,
    size: Option<(usize, usize)>,
) -> Result<Vec<(&'f PathBuf, Decoded)>> {
    let mut images = Vec::with_capacity(files.len());
    let mut failures = Vec::new();
    for (path, decoded) in files.iter().zip(decode_all(files, channels, size)) {
        match decoded {
            Ok(d) => images.push((path, d)),
            Err(e) => failures.push(format!("{}: {e}", path.display())),
        }
    }
    if images.is_empty() || failures.len() * 2 > files.len() {
        bail!(
            "{} of the {} image files in {} could not be decoded as PNG or JPEG; remove or replace the damaged \
             files. The first failures: {}",
            failures.len(),
            files.len(),
            dir.display(),
            failures.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
        );
    }
    for f in &failures {
        eprintln!("warning: skipping {f}");
    }
    Ok(images)
}

/// The size all the images share, or an error naming two that differ.
fn common_size(dir: &Path, images: &[(&PathBuf, Decoded)]) -> Result<(usize, usize)> {
    let (first, d0) = &images[0];
    if let Some((other, d)) = images.iter().find(|(_, d)| d.native != d0.native) {
        bail!(
            "images in {} differ in size: {} is {}x{} but {} is {}x{}; pass --image-size to resize them all \
             to one size",
            dir.display(),
            first.display(),
            d0.native.0,
            d0.native.1,
            other.display(),
            d.native.0,
            d.native.1
        );
    }
    Ok((d0.native.0 as usize, d0.native.1 as usize))
}
