//! The images a training run reads by index: a [`Dataset`] in memory, or the training
//! split of a cached folder left in its cache file ([`CachedSet`]) and read a shard at
//! a time, so that the host holds a shard of a large folder, not the whole of it.

use super::Dataset;
use anyhow::{Context, Result};
use std::borrow::Cow;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The shape of a set of images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub width: usize,
    pub height: usize,
    /// 1 (greyscale) or 3 (RGB).
    pub channels: usize,
    /// Images in the set.
    pub len: usize,
}

impl Dims {
    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.width * self.height * self.channels
    }

    /// Bytes of the whole set.
    pub fn bytes(&self) -> u64 {
        self.image_len() as u64 * self.len as u64
    }
}

/// Images read by index, one u8 per value, laid out as [`Dataset::pixels`].
pub trait ImageSource {
    fn dims(&self) -> Dims;

    /// Image `i`'s pixels into `out` (`dims().image_len()` bytes).
    fn read_image(&self, i: usize, out: &mut [u8]) -> Result<()>;

    /// Every image back to back: borrowed where they are in memory already.
    fn all_pixels(&self) -> Result<Cow<'_, [u8]>>;

    /// A reader of the same images that owns what it needs (a streamed run keeps one
    /// after its caller's set is gone): a copy of a set in memory, a handle on a file.
    fn reader(&self) -> Box<dyn ImageSource + Send>;
}

impl ImageSource for Dataset {
    fn dims(&self) -> Dims {
        Dims { width: self.width, height: self.height, channels: self.channels, len: self.len }
    }

    fn read_image(&self, i: usize, out: &mut [u8]) -> Result<()> {
        out.copy_from_slice(self.image(i));
        Ok(())
    }

    fn all_pixels(&self) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(&self.pixels))
    }

    fn reader(&self) -> Box<dyn ImageSource + Send> {
        Box::new(self.clone())
    }
}

/// Images of a cache file (`super::cache`), picked by their place in it and read when
/// asked for; each may be cropped to a centred rectangle on the way.
#[derive(Clone)]
pub struct CachedSet {
    pub name: String,
    path: PathBuf,
    file: Arc<Mutex<File>>,
    /// Where the first image begins in the file.
    start: u64,
    /// The stored images' (width, height, channels).
    stored: (usize, usize, usize),
    /// The file's image number of each image of the set, in the set's order.
    index: Vec<u32>,
    /// The (left, top, width, height) kept of each stored image.
    crop: (usize, usize, usize, usize),
}

impl CachedSet {
    /// The images `index` (numbers of images in the file, in the set's order) of the
    /// file at `path`, opened as `file`, whose images of `stored` = (width, height,
    /// channels) begin at byte `start`.
    pub(crate) fn new(
        name: String,
        path: PathBuf,
        file: File,
        start: u64,
        stored: (usize, usize, usize),
        index: Vec<u32>,
    ) -> CachedSet {
        let crop = (0, 0, stored.0, stored.1);
        CachedSet { name, path, file: Arc::new(Mutex::new(file)), start, stored, index, crop }
    }

    /// The first `n` images.
    pub fn truncate(&mut self, n: usize) {
        self.index.truncate(n);
    }

    /// Another set `name` of the same file: its images `index`.
    pub(crate) fn other(&self, name: String, index: Vec<u32>) -> CachedSet {
        CachedSet { name, index, ..self.clone() }
    }

    /// Crops as [`super::crop_to_multiple`] does, when the images are read.
    pub fn crop_to_multiple(&mut self, m: usize) {
        let (sw, sh) = (self.stored.0, self.stored.1);
        assert!(m > 0 && sw >= m && sh >= m, "cannot crop {sw}x{sh} images to a multiple of {m}");
        let (w, h) = (sw / m * m, sh / m * m);
        self.crop = ((sw - w) / 2, (sh - h) / 2, w, h);
    }

    /// The stored image `n` of the file into `out` (all its bytes).
    fn read_stored(&self, n: u32, out: &mut [u8]) -> Result<()> {
        let at = self.start + n as u64 * out.len() as u64;
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(out))
            .with_context(|| format!("cannot read image {n} of the image cache {}", self.path.display()))
    }
}

impl ImageSource for CachedSet {
    fn dims(&self) -> Dims {
        Dims { width: self.crop.2, height: self.crop.3, channels: self.stored.2, len: self.index.len() }
    }

    fn read_image(&self, i: usize, out: &mut [u8]) -> Result<()> {
        let (sw, sh, c) = self.stored;
        let (left, top, w, h) = self.crop;
        if (w, h) == (sw, sh) {
            return self.read_stored(self.index[i], out);
        }
        let mut full = vec![0u8; sw * sh * c];
        self.read_stored(self.index[i], &mut full)?;
        for y in 0..h {
            let row = ((top + y) * sw + left) * c;
            out[y * w * c..(y + 1) * w * c].copy_from_slice(&full[row..row + w * c]);
        }
        Ok(())
    }

    fn all_pixels(&self) -> Result<Cow<'_, [u8]>> {
        let d = self.dims();
        let bytes = usize::try_from(d.bytes()).context("the set holds more bytes than this machine can address")?;
        let mut pixels = Vec::new();
        pixels.try_reserve_exact(bytes).with_context(|| format!("no memory for the {bytes} bytes of {}", self.name))?;
        pixels.resize(bytes, 0);
        for (i, out) in pixels.chunks_exact_mut(d.image_len().max(1)).enumerate() {
            self.read_image(i, out)?;
        }
        Ok(Cow::Owned(pixels))
    }

    fn reader(&self) -> Box<dyn ImageSource + Send> {
        Box::new(self.clone())
    }
}

/// A training set: in memory, or left in a folder's cache file.
pub enum TrainSet {
    Memory(Dataset),
    Cached(CachedSet),
}

impl TrainSet {
    pub fn name(&self) -> &str {
        match self {
            TrainSet::Memory(d) => &d.name,
            TrainSet::Cached(c) => &c.name,
        }
    }

    /// The first `n` images.
    pub fn truncate(&mut self, n: usize) {
        match self {
            TrainSet::Memory(d) => d.truncate(n),
            TrainSet::Cached(c) => c.truncate(n),
        }
    }

    /// Crops as [`super::crop_to_multiple`] does.
    pub fn crop_to_multiple(&mut self, m: usize) {
        match self {
            TrainSet::Memory(d) => *d = super::crop_to_multiple(d, m),
            TrainSet::Cached(c) => c.crop_to_multiple(m),
        }
    }

    /// Takes `n` images chosen by `seed` out of the set (the rest keep their order) and
    /// returns them, in their order, as `<name>-validation`.
    pub fn split_validation(&mut self, n: usize, seed: u64) -> Result<Dataset> {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let len = self.dims().len;
        let mut pick: Vec<usize> = (0..len).collect();
        // a stream of its own: the same seed's split of a folder into train and test is another shuffle
        pick.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed ^ 0x7661_6c69_6461_7465));
        let mut chosen = vec![false; len];
        for &i in &pick[..n] {
            chosen[i] = true;
        }
        let (val, keep): (Vec<usize>, Vec<usize>) = (0..len).partition(|&i| chosen[i]);
        let name = format!("{}-validation", self.name());
        match self {
            TrainSet::Memory(d) => {
                let part = |idx: &[usize], name: String| Dataset {
                    name,
                    width: d.width,
                    height: d.height,
                    channels: d.channels,
                    pixels: idx.iter().flat_map(|&i| d.image(i).iter().copied()).collect(),
                    labels: d.labels.as_ref().map(|l| idx.iter().map(|&i| l[i]).collect()),
                    len: idx.len(),
                };
                let validation = part(&val, name);
                *d = part(&keep, d.name.clone());
                Ok(validation)
            }
            TrainSet::Cached(c) => {
                let at = |idx: &[usize]| idx.iter().map(|&i| c.index[i]).collect::<Vec<u32>>();
                let validation = TrainSet::Cached(c.other(name, at(&val))).into_dataset()?;
                c.index = at(&keep);
                Ok(validation)
            }
        }
    }

    /// The set in memory (read from its file where it is left there).
    pub fn into_dataset(self) -> Result<Dataset> {
        match self {
            TrainSet::Memory(d) => Ok(d),
            TrainSet::Cached(c) => {
                let d = c.dims();
                let pixels = c.all_pixels()?.into_owned();
                let (width, height, channels, len) = (d.width, d.height, d.channels, d.len);
                Ok(Dataset { name: c.name, width, height, channels, pixels, labels: None, len })
            }
        }
    }

    fn source(&self) -> &dyn ImageSource {
        match self {
            TrainSet::Memory(d) => d,
            TrainSet::Cached(c) => c,
        }
    }
}

impl ImageSource for TrainSet {
    fn dims(&self) -> Dims {
        self.source().dims()
    }

    fn read_image(&self, i: usize, out: &mut [u8]) -> Result<()> {
        self.source().read_image(i, out)
    }

    fn all_pixels(&self) -> Result<Cow<'_, [u8]>> {
        self.source().all_pixels()
    }

    fn reader(&self) -> Box<dyn ImageSource + Send> {
        self.source().reader()
    }
}
