//! A folder's decoded images cached as one raw u8 file, so that the next run reads
//! them instead of decoding: a fixed header, then every image's pixels back to back
//! in path order (image i at `HEADER_LEN + i * width * height * channels`), so that
//! a reader can map or stream any range of images without reading the rest.
//!
//! The file is named after a key that hashes the folder's file list (each file's
//! relative path, byte size and modification time), the size asked for and the
//! channels: any change to them names another file, and the old one is never read.

use super::folder::ImageFile;
use super::images::{split_order, Images};
use super::{CachedSet, Dataset};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The file's first bytes.
const MAGIC: [u8; 8] = *b"ELBOPIX\0";
/// The header's layout and the pixels' order; bump on any change to either.
const FORMAT_VERSION: u32 = 1;
/// Bump when decoding, conversion or resizing changes the bytes of an image: it is
/// part of the key, so caches of the old bytes stop matching.
const PIXELS_VERSION: u32 = 1;
/// Bytes before the first image; the header's fields, little-endian:
/// magic 8, version 4, channels 4, width 4, height 4, count 8, skipped 8, key 8,
/// reserved 8 (zero), checksum 8 (FNV-1a 64 of the 56 bytes before it).
pub const HEADER_LEN: usize = 64;

/// FNV-1a, 64 bits: small and the same on every platform and Rust version (std's
/// DefaultHasher promises neither, and a key must name the same file next year).
pub(crate) struct Fnv(pub(crate) u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub(crate) fn bytes(&mut self, bytes: &[u8]) -> &mut Fnv {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
}

/// What names a folder's cache: the folder's name (for people reading the cache
/// folder), the pixels asked for and the hash of everything that decides them.
pub(crate) struct Key {
    folder: String,
    channels: usize,
    size: Option<(usize, usize)>,
    pub(crate) hash: u64,
}

impl Key {
    /// The key of `files` (listed under `dir`) decoded to `channels`, resized to `size`
    /// or kept at their native size (None).
    pub(crate) fn new(
        dir: &Path,
        folder: &str,
        files: &[ImageFile],
        channels: usize,
        size: Option<(usize, usize)>,
    ) -> Key {
        let (w, h) = size.unwrap_or((0, 0));
        let mut fnv = Fnv::new();
        fnv.bytes(&PIXELS_VERSION.to_le_bytes())
            .bytes(&(channels as u64).to_le_bytes())
            .bytes(&(w as u64).to_le_bytes())
            .bytes(&(h as u64).to_le_bytes())
            .bytes(&(files.len() as u64).to_le_bytes());
        for f in files {
            let relative = f.path.strip_prefix(dir).unwrap_or(&f.path).as_os_str().as_encoded_bytes();
            // a time before 1970 or none at all (rare file systems) counts as 0: the size
            // and the path still key the file
            let since = f.modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()).unwrap_or_default();
            // the length first, so that no two lists of paths hash the same bytes
            fnv.bytes(&(relative.len() as u64).to_le_bytes())
                .bytes(relative)
                .bytes(&f.len.to_le_bytes())
                .bytes(&since.as_secs().to_le_bytes())
                .bytes(&since.subsec_nanos().to_le_bytes());
        }
        Key { folder: folder.to_string(), channels, size, hash: fnv.0 }
    }

    /// `<folder>-<W>x<H>x<C>-<hash>.u8`, or `<folder>-nativex<C>-<hash>.u8` for images
    /// kept at their size; the folder's name cut to letters, digits, `-`, `_` and `.`.
    pub(crate) fn file_name(&self) -> String {
        let folder: String = self
            .folder
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .take(64)
            .collect();
        let size = match self.size {
            Some((w, h)) => format!("{w}x{h}"),
            None => "native".to_string(),
        };
        format!("{folder}-{size}x{}-{:016x}.u8", self.channels, self.hash)
    }
}

/// The folder that holds the caches: `$ELBO_CACHE_DIR`, else `$XDG_CACHE_HOME/elbo/datasets`,
/// else `$HOME/.cache/elbo/datasets`; None, with a warning, when none of them is set.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = var("ELBO_CACHE_DIR")
        // the XDG spec says a relative XDG_CACHE_HOME is to be ignored
        .or_else(|| var("XDG_CACHE_HOME").filter(|p| p.is_absolute()).map(|p| p.join("elbo/datasets")))
        .or_else(|| var("HOME").map(|p| p.join(".cache/elbo/datasets")));
    if dir.is_none() {
        eprintln!(
            "warning: no cache folder (none of ELBO_CACHE_DIR, XDG_CACHE_HOME and HOME is set); the images are \
             decoded on every run: set ELBO_CACHE_DIR to keep them"
        );
    }
    dir
}

/// The header of a cache file: the images' shape and count, and the key they were made for.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Header {
    channels: u32,
    width: u32,
    height: u32,
    /// Images in the file.
    count: u64,
    /// Files of the folder that did not decode, left out.
    skipped: u64,
    key: u64,
}

impl Header {
    fn of(images: &Images, key: &Key) -> Result<Header> {
        let narrow = |v: usize| u32::try_from(v).context("an image side or channel count past 2^32");
        Ok(Header {
            channels: narrow(images.channels)?,
            width: narrow(images.width)?,
            height: narrow(images.height)?,
            count: images.len as u64,
            skipped: images.skipped as u64,
            key: key.hash,
        })
    }

    /// The length a file with this header has: the header and every image; None when
    /// it overflows (a damaged header).
    fn file_len(&self) -> Option<u64> {
        let image = (self.width as u64).checked_mul(self.height as u64)?.checked_mul(self.channels as u64)?;
        image.checked_mul(self.count)?.checked_add(HEADER_LEN as u64)
    }

    fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.channels.to_le_bytes());
        b[16..20].copy_from_slice(&self.width.to_le_bytes());
        b[20..24].copy_from_slice(&self.height.to_le_bytes());
        b[24..32].copy_from_slice(&self.count.to_le_bytes());
        b[32..40].copy_from_slice(&self.skipped.to_le_bytes());
        b[40..48].copy_from_slice(&self.key.to_le_bytes());
        // 48..56 reserved, zero
        let sum = Fnv::new().bytes(&b[..56]).0;
        b[56..64].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// The header in `b`, or an error saying which part is wrong.
    fn decode(b: &[u8; HEADER_LEN]) -> Result<Header> {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if b[0..8] != MAGIC {
            bail!("it does not start as an elbo image cache");
        }
        if u32_at(8) != FORMAT_VERSION {
            bail!("it is of format version {}, this elbo reads version {FORMAT_VERSION}", u32_at(8));
        }
        if u64_at(56) != Fnv::new().bytes(&b[..56]).0 {
            bail!("its header's checksum does not match the header");
        }
        let (channels, width, height) = (u32_at(12), u32_at(16), u32_at(20));
        Ok(Header { channels, width, height, count: u64_at(24), skipped: u64_at(32), key: u64_at(40) })
    }
}

/// A cache file whose header and length were checked, its images not yet read.
pub(crate) struct CacheFile {
    file: std::fs::File,
    path: PathBuf,
    header: Header,
}

/// The cache file at `path` for `key`; None when there is none that opens (a folder
/// that cannot hold one is found out, and warned about, when writing); an error saying
/// what is wrong when the file is damaged, truncated or made for another key.
pub(crate) fn open(path: &Path, key: &Key) -> Result<Option<CacheFile>> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(None);
    };
    let have = file.metadata().context("cannot read its length")?.len();
    if have < HEADER_LEN as u64 {
        bail!("it is {have} bytes long, shorter than its {HEADER_LEN}-byte header");
    }
    let mut head = [0u8; HEADER_LEN];
    file.read_exact(&mut head).context("cannot read its header")?;
    let header = Header::decode(&head)?;
    check(&header, key)?;
    let want = header.file_len().context("its header's sizes overflow")?;
    if have != want {
        bail!("it is {have} bytes long but its header says {want} (a truncated or damaged file)");
    }
    Ok(Some(CacheFile { file, path: path.to_path_buf(), header }))
}

impl CacheFile {
    /// Images in the file.
    pub(crate) fn count(&self) -> u64 {
        self.header.count
    }

    /// The images, read straight into the dataset's buffer (no zeroing, no second copy).
    pub(crate) fn read(self) -> Result<Images> {
        let h = self.header;
        let bytes = h.file_len().context("its header's sizes overflow")? - HEADER_LEN as u64;
        let bytes = usize::try_from(bytes).context("it holds more bytes than this machine can address")?;
        let mut pixels = Vec::new();
        pixels.try_reserve_exact(bytes).with_context(|| format!("no memory for its {bytes} bytes of images"))?;
        self.file.take(bytes as u64).read_to_end(&mut pixels).context("cannot read its images")?;
        if pixels.len() != bytes {
            bail!("it ended after {} of its {bytes} image bytes", pixels.len());
        }
        Ok(Images {
            width: h.width as usize,
            height: h.height as usize,
            channels: h.channels as usize,
            len: h.count as usize,
            pixels,
            skipped: h.skipped as usize,
        })
    }
}

impl CacheFile {
    /// Files of the folder that did not decode, left out.
    pub(crate) fn skipped(&self) -> u64 {
        self.header.skipped
    }

    /// The seeded split of `Images::split` (`<folder>-train` and `<folder>-test`, the
    /// same images in the same order), the test set read into memory and the training
    /// set left in the file, read as it is used.
    pub(crate) fn split(self, dir: &Path, folder: &str, test_fraction: f64, seed: u64) -> Result<(CachedSet, Dataset)> {
        let h = self.header;
        let len = usize::try_from(h.count).context("it holds more images than this machine can address")?;
        if u32::try_from(len).is_err() {
            bail!("it holds {len} images, more than 2^32");
        }
        let (order, n_test) = split_order(dir, len, test_fraction, seed)?;
        let (width, height, channels) = (h.width as usize, h.height as usize, h.channels as usize);
        let index = |from: &[usize]| from.iter().map(|&i| i as u32).collect::<Vec<u32>>();
        let stored = (width, height, channels);
        let (train_index, test_index) = (index(&order[..len - n_test]), index(&order[len - n_test..]));
        let start = HEADER_LEN as u64;
        let train = CachedSet::new(format!("{folder}-train"), self.path, self.file, start, stored, train_index);
        let test = train.other(format!("{folder}-test"), test_index);
        let test = crate::data::TrainSet::Cached(test).into_dataset()?;
        Ok((train, test))
    }
}

/// An error when `header` was not made for `key`: another key, channel count or size.
fn check(header: &Header, key: &Key) -> Result<()> {
    if header.key != key.hash {
        bail!("it was made for key {:016x}, not {:016x}", header.key, key.hash);
    }
    if header.channels as usize != key.channels {
        bail!("it holds {} channel(s), not {}", header.channels, key.channels);
    }
    let size = (header.width as usize, header.height as usize);
    if key.size.is_some_and(|s| s != size) || size.0 == 0 || size.1 == 0 {
        bail!("it holds {}x{} images, not the size asked for", size.0, size.1);
    }
    Ok(())
}

/// Writes `images` to `path` atomically (`crate::write_atomic_parts`: a temporary file
/// beside it, flushed, then renamed), so that a killed run never leaves a partial file
/// under the real name. The folder is created when missing.
pub(crate) fn write(path: &Path, key: &Key, images: &Images) -> Result<()> {
    let dir = path.parent().context("the cache path has no folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    crate::write_atomic_parts(path, &[&Header::of(images, key)?.encode(), &images.pixels])
}
