//! Datasets as bytes: one u8 per pixel, images back to back, ready to upload.

use crate::idx::read_idx;
use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::{Path, PathBuf};

#[derive(Clone)]
pub struct Dataset {
    pub name: String,
    pub width: usize,
    pub height: usize,
    /// 1 (greyscale) or 3 (RGB).
    pub channels: usize,
    /// len * height * width * channels bytes, row by row, the channels of a pixel
    /// together (channels-last); 0 = black.
    pub pixels: Vec<u8>,
    pub labels: Option<Vec<u8>>,
    pub len: usize,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Dataset({}: {} images of {}x{}x{})", self.name, self.len, self.width, self.height, self.channels)
    }
}

impl Dataset {
    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.width * self.height * self.channels
    }

    pub fn image(&self, i: usize) -> &[u8] {
        &self.pixels[i * self.image_len()..(i + 1) * self.image_len()]
    }

    /// The first `n` images (for quick runs and tests).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len);
        self.pixels.truncate(n * self.image_len());
        if let Some(l) = &mut self.labels {
            l.truncate(n);
        }
        self.len = n;
    }
}

/// The directory holding MNIST: `--data-dir`, else `data/mnist` here or in the source tree.
pub fn mnist_dir(given: Option<&Path>) -> PathBuf {
    if let Some(d) = given {
        return d.to_path_buf();
    }
    let local = PathBuf::from("data/mnist");
    if local.exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist")
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [format!("{stem}.gz"), stem.to_string()] {
        let p = dir.join(name);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{} has no {stem}.gz (nor {stem}); point --data-dir at a folder with the four MNIST IDX files", dir.display())
}

fn load_split(dir: &Path, images: &str, labels: &str, name: &str) -> Result<Dataset> {
    let img_path = find(dir, images)?;
    let lab_path = find(dir, labels)?;
    let img = read_idx(&img_path)?;
    let lab = read_idx(&lab_path)?;
    if img.dims.len() != 3 {
        bail!(
            "{} holds a {}-dimensional array, expected images (count, rows, cols)",
            img_path.display(),
            img.dims.len()
        );
    }
    if lab.dims.len() != 1 {
        bail!("{} holds a {}-dimensional array, expected labels (count)", lab_path.display(), lab.dims.len());
    }
    if img.dims[0] != lab.dims[0] {
        bail!(
            "{} has {} images but {} has {} labels; the files do not belong together",
            img_path.display(),
            img.dims[0],
            lab_path.display(),
            lab.dims[0]
        );
    }
    if img.dims[0] == 0 {
        bail!("{} holds no images", img_path.display());
    }
    if let Some(bad) = lab.data.iter().find(|&&l| l > 9) {
        bail!("{} has label {bad}; MNIST labels are 0 to 9", lab_path.display());
    }
    Ok(Dataset {
        channels: 1,
        name: name.to_string(),
        width: img.dims[2],
        height: img.dims[1],
        len: img.dims[0],
        pixels: img.data,
        labels: Some(lab.data),
    })
}

/// MNIST's training and test sets.
pub fn load_mnist(dir: &Path) -> Result<(Dataset, Dataset)> {
    let train = load_split(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "mnist-train")?;
    let test = load_split(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "mnist-test")?;
    if (train.width, train.height) != (test.width, test.height) {
        bail!("training images are {}x{} but test images {}x{}", train.width, train.height, test.width, test.height);
    }
    Ok((train, test))
}

/// The directory holding the face crops: `--data-dir`, else `data/lfw-faces-25x25` here or in the source tree.
pub fn faces_dir(given: Option<&Path>) -> PathBuf {
    if let Some(d) = given {
        return d.to_path_buf();
    }
    let local = PathBuf::from("data/lfw-faces-25x25");
    if local.exists() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/lfw-faces-25x25")
}

/// The 100 greyscale 25x25 LFW face crops, split at random into training and test sets.
pub fn load_faces(dir: &Path, test_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
    let (mut train, mut test) = load_image_folder(dir, 1, None, test_fraction, seed)?;
    train.name = "faces-train".to_string();
    test.name = "faces-test".to_string();
    Ok((train, test))
}

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

    // Decode, then set the failures aside: a few are forgiven, a majority is not.
    let mut images = Vec::with_capacity(files.len());
    let mut failures = Vec::new();
    for (path, decoded) in files.iter().zip(decode_all(&files, channels, size)) {
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
    let (width, height) = match size {
        Some(s) => s,
        None => {
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
            (d0.native.0 as usize, d0.native.1 as usize)
        }
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

/// A copy of `ds` with width and height cropped to the largest multiple of `m`,
/// keeping the centre: floor(excess / 2) rows and columns go at the top and left,
/// the rest at the bottom and right. Convolutional models, which halve the image
/// twice, use it with m = 4 (25x25 faces become 24x24). Panics when an image is
/// smaller than `m` in either direction.
pub fn crop_to_multiple(ds: &Dataset, m: usize) -> Dataset {
    assert!(
        m > 0 && ds.width >= m && ds.height >= m,
        "cannot crop {}x{} images to a multiple of {m}",
        ds.width,
        ds.height
    );
    let (w, h) = (ds.width / m * m, ds.height / m * m);
    let (left, top) = ((ds.width - w) / 2, (ds.height - h) / 2);
    let c = ds.channels;
    let mut pixels = Vec::with_capacity(ds.len * h * w * c);
    for i in 0..ds.len {
        let img = ds.image(i);
        for y in top..top + h {
            let row = (y * ds.width + left) * c;
            pixels.extend_from_slice(&img[row..row + w * c]);
        }
    }
    Dataset { name: ds.name.clone(), width: w, height: h, channels: c, pixels, labels: ds.labels.clone(), len: ds.len }
}
