//! Any folder of PNG/JPEG images as a dataset: decoded in parallel with a progress
//! bar, once; later runs read the decoded images from a cache file ([`super::cache`]).

use super::cache::{self, Key};
use super::images::Images;
use super::{Dataset, TrainSet};
use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// File extensions read as images, compared without regard to case.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// One image file as listed: its path, and the size and time that key the cache.
pub(crate) struct ImageFile {
    pub path: PathBuf,
    /// Bytes.
    pub len: u64,
    /// None where the file system keeps no modification time.
    pub modified: Option<SystemTime>,
}

/// Every PNG or JPEG file under `dir`, recursively (symbolic links to folders are not followed).
fn image_files(dir: &Path, out: &mut Vec<ImageFile>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        if entry.file_type().with_context(|| format!("cannot inspect {}", path.display()))?.is_dir() {
            image_files(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
        {
            // follows a link to a file; a broken link is no image, as before
            if let Some(meta) = std::fs::metadata(&path).ok().filter(|m| m.is_file()) {
                out.push(ImageFile { len: meta.len(), modified: meta.modified().ok(), path });
            }
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

/// Decodes `files` on every core, keeping their order; `bar` counts the files done.
fn decode_all(
    files: &[ImageFile],
    channels: usize,
    size: Option<(usize, usize)>,
    bar: &ProgressBar,
) -> Vec<Result<Decoded>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(files.len()).max(1);
    let chunk = files.len().div_ceil(threads).max(1);
    let decode = |f: &ImageFile| {
        let d = decode_image(&f.path, channels, size);
        bar.inc(1);
        d
    };
    std::thread::scope(|s| {
        let workers: Vec<_> =
            files.chunks(chunk).map(|part| s.spawn(move || part.iter().map(decode).collect::<Vec<_>>())).collect();
        workers.into_iter().flat_map(|w| w.join().expect("an image decoder thread panicked")).collect()
    })
}

/// A bar counting the decoded files on stderr; hidden when `quiet` (and drawn by
/// indicatif only where stderr is a terminal).
fn decode_bar(files: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(files as u64);
    bar.set_style(
        ProgressStyle::with_template("decoding images [{bar:30}] {pos}/{len} eta {eta}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    bar
}

/// How to load a folder of images: the pixels wanted, the split, and where the
/// decoded images are cached.
#[derive(Clone, Debug)]
pub struct FolderLoad {
    /// 1 (greyscale) or 3 (RGB).
    pub channels: usize,
    /// (width, height) to resize every image to; None: keep their size, which all must share.
    pub size: Option<(usize, usize)>,
    /// The share of images held out for testing, in (0, 1).
    pub test_fraction: f64,
    /// Seed of the split.
    pub seed: u64,
    /// The folder of cache files ([`super::cache_dir`] finds the user's); None: decode
    /// every time and write nothing.
    pub cache_dir: Option<PathBuf>,
    /// No progress bar and no line about the cache (warnings still print).
    pub quiet: bool,
}

/// Where a folder's images came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Decoded from the files, then cached in this file (None: no cache written).
    Decoded(Option<PathBuf>),
    /// Read from this cache file, nothing decoded.
    Cache(PathBuf),
}

/// Every PNG and JPEG file under `dir` (recursively, in path order), as greyscale
/// (`channels` = 1) or RGB (3), resized to `size` = (width, height) when given,
/// else all of one size; split at random (by `seed`) into a training set and a
/// test set of `max(1, round(len * test_fraction))` images. Files that do not
/// decode are skipped with a warning on stderr, unless more than half of them fail.
/// Decodes every time, quietly: [`FolderLoad`] adds the cache and the progress bar.
pub fn load_image_folder(
    dir: &Path,
    channels: usize,
    size: Option<(usize, usize)>,
    test_fraction: f64,
    seed: u64,
) -> Result<(Dataset, Dataset)> {
    let load = FolderLoad { channels, size, test_fraction, seed, cache_dir: None, quiet: true };
    load.load(dir).map(|(train, test, _)| (train, test))
}

impl FolderLoad {
    /// The folder's training and test sets (as [`load_image_folder`] describes), and
    /// where the images came from. A cache that cannot be read or written is warned
    /// about and done without, never an error.
    pub fn load(&self, dir: &Path) -> Result<(Dataset, Dataset, Source)> {
        self.check()?;
        let files = list_images(dir)?;
        let folder = folder_name(dir);
        let (images, source) = match &self.cache_dir {
            Some(cache_dir) => self.cached(dir, &folder, &files, cache_dir)?,
            None => (self.decode(dir, &files)?, Source::Decoded(None)),
        };
        let (train, test) = images.split(dir, &folder, self.test_fraction, self.seed)?;
        Ok((train, test, source))
    }

    /// As [`FolderLoad::load`], but where the images come from the cache the training set
    /// stays in the cache file ([`TrainSet::Cached`]) and is read as it is used: host
    /// memory then holds the test set and what the reader of the training set asks for
    /// at a time, not the folder.
    pub fn load_streaming(&self, dir: &Path) -> Result<(TrainSet, Dataset, Source)> {
        self.check()?;
        let files = list_images(dir)?;
        let folder = folder_name(dir);
        if let Some(cache_dir) = &self.cache_dir {
            let key = Key::new(dir, &folder, &files, self.channels, self.size);
            let path = cache_dir.join(key.file_name());
            if let Some(file) = self.open_cache(dir, &path, &key, files.len()) {
                let (train, test) = file.split(dir, &folder, self.test_fraction, self.seed)?;
                return Ok((TrainSet::Cached(train), test, Source::Cache(path)));
            }
            let (images, source) = self.decode_into_cache(dir, &files, &path, &key)?;
            let (train, test) = images.split(dir, &folder, self.test_fraction, self.seed)?;
            return Ok((TrainSet::Memory(train), test, source));
        }
        let (train, test) = self.decode(dir, &files)?.split(dir, &folder, self.test_fraction, self.seed)?;
        Ok((TrainSet::Memory(train), test, Source::Decoded(None)))
    }

    /// Every image of `path` (one PNG or JPEG file, or a folder of them searched
    /// recursively) in path order, as one set named after it: the user's own images, not
    /// split and not cached.
    pub fn load_all(&self, path: &Path) -> Result<Dataset> {
        let files = if path.is_file() {
            let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
            vec![ImageFile { path: path.to_path_buf(), len: meta.len(), modified: meta.modified().ok() }]
        } else {
            list_images(path)?
        };
        let images = self.decode(path, &files)?;
        Ok(Dataset {
            name: folder_name(path),
            width: images.width,
            height: images.height,
            channels: images.channels,
            pixels: images.pixels,
            labels: None,
            len: images.len,
        })
    }

    /// The channels, the fraction and the size, checked before any file is read.
    fn check(&self) -> Result<()> {
        let (channels, test_fraction) = (self.channels, self.test_fraction);
        if channels != 1 && channels != 3 {
            bail!("{channels} channels asked for; images are loaded as greyscale (1) or RGB (3)");
        }
        if test_fraction.is_nan() || test_fraction <= 0.0 || test_fraction >= 1.0 {
            bail!(
                "test fraction {test_fraction} is not between 0 and 1 (exclusive); 0.1 holds out a tenth of the images"
            );
        }
        if let Some((w, h)) = self.size {
            if w == 0 || h == 0 || w > u32::MAX as usize || h > u32::MAX as usize {
                bail!("image size {w}x{h} is not a valid size; give a width and a height of at least 1 pixel");
            }
        }
        Ok(())
    }

    /// The images from the cache file of this listing in `cache_dir` when it is there
    /// and sound, else decoded and written there.
    fn cached(&self, dir: &Path, folder: &str, files: &[ImageFile], cache_dir: &Path) -> Result<(Images, Source)> {
        let key = Key::new(dir, folder, files, self.channels, self.size);
        let path = cache_dir.join(key.file_name());
        if let Some(file) = self.open_cache(dir, &path, &key, files.len()) {
            match file.read() {
                Ok(images) => return Ok((images, Source::Cache(path))),
                Err(e) => {
                    eprintln!("warning: ignoring the image cache {}: {e:#}; decoding the images again", path.display())
                }
            }
        }
        self.decode_into_cache(dir, files, &path, &key)
    }

    /// The cache file at `path` for `key` when it is there and sound (a damaged one is
    /// warned about); says how many images it holds, and how many of the folder's
    /// `files` did not decode.
    fn open_cache(&self, dir: &Path, path: &Path, key: &Key, files: usize) -> Option<cache::CacheFile> {
        let file = match cache::open(path, key) {
            Ok(file) => file?,
            Err(e) => {
                eprintln!("warning: ignoring the image cache {}: {e:#}; decoding the images again", path.display());
                return None;
            }
        };
        if !self.quiet {
            eprintln!("reading {} cached images from {}", file.count(), path.display());
        }
        if file.skipped() > 0 {
            eprintln!(
                "warning: {} of the {files} image files in {} did not decode and are left out (--no-cache names them)",
                file.skipped(),
                dir.display()
            );
        }
        Some(file)
    }

    /// `files` decoded, and written to the cache file at `path` (a cache that cannot be
    /// written is warned about and done without).
    fn decode_into_cache(&self, dir: &Path, files: &[ImageFile], path: &Path, key: &Key) -> Result<(Images, Source)> {
        let images = self.decode(dir, files)?;
        if let Err(e) = cache::write(path, key, &images) {
            eprintln!("warning: {e:#}; going on without a cache (set ELBO_CACHE_DIR to a writable folder, or pass --no-cache)");
            return Ok((images, Source::Decoded(None)));
        }
        if !self.quiet {
            let shape = if self.channels == 1 { "greyscale" } else { "RGB" };
            let (w, h, bytes) = (images.width, images.height, HumanBytes(images.pixels.len() as u64));
            eprintln!("cached {} images ({w}x{h} {shape}, {bytes}) in {}", images.len, path.display());
        }
        Ok((images, Source::Decoded(Some(path.to_path_buf()))))
    }

    /// Every readable file of `files` decoded, converted and resized, in path order.
    fn decode(&self, dir: &Path, files: &[ImageFile]) -> Result<Images> {
        let bar = decode_bar(files.len(), self.quiet);
        let decoded = decode_readable(dir, files, self.channels, self.size, &bar);
        bar.finish_and_clear();
        let decoded = decoded?;
        let (width, height) = match self.size {
            Some(s) => s,
            None => common_size(dir, &decoded)?,
        };
        let len = decoded.len();
        let mut pixels = Vec::with_capacity(len * width * height * self.channels);
        // each image's own buffer is freed as it is copied: one copy of the folder at a time
        for (_, d) in decoded {
            pixels.extend_from_slice(&d.pixels);
        }
        Ok(Images { width, height, channels: self.channels, len, pixels, skipped: files.len() - len })
    }
}

/// The folder's own name, for the datasets' and the cache's names ("images" when it has none).
fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(|| dir.canonicalize().ok()?.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "images".to_string())
}

/// Every PNG and JPEG file under `dir`, sorted; an error that says what to do when the
/// folder is missing, not a folder, or holds none.
fn list_images(dir: &Path) -> Result<Vec<ImageFile>> {
    if !dir.exists() {
        bail!("image folder {} does not exist; expected a folder of PNG or JPEG images, check the path", dir.display());
    }
    if !dir.is_dir() {
        bail!("{} is not a folder; expected a folder of PNG or JPEG images (searched recursively)", dir.display());
    }
    let mut files = Vec::new();
    image_files(dir, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
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
    files: &'f [ImageFile],
    channels: usize,
    size: Option<(usize, usize)>,
    bar: &ProgressBar,
) -> Result<Vec<(&'f PathBuf, Decoded)>> {
    let mut images = Vec::with_capacity(files.len());
    let mut failures = Vec::new();
    for (file, decoded) in files.iter().zip(decode_all(files, channels, size, bar)) {
        match decoded {
            Ok(d) => images.push((&file.path, d)),
            Err(e) => failures.push(format!("{}: {e}", file.path.display())),
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
