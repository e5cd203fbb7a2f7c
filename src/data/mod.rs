//! Datasets as bytes: one u8 per pixel, images back to back, ready to upload:
//! MNIST ([`idx`]), the faces, and any folder of images ([`folder`], decoded once
//! and then read from its [`cache`]).

pub mod cache;
pub mod folder;
pub mod idx;
mod images;
mod source;

pub use cache::cache_dir;
pub use folder::{load_image_folder, FolderLoad, Source};
pub use source::{CachedSet, Dims, ImageSource, TrainSet};

use anyhow::{bail, Result};
use idx::read_idx;
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

/// `a`'s images then `b`'s (of the same shape), as one set named after `a`; labels where
/// both have them.
pub fn concat(a: &Dataset, b: &Dataset) -> Dataset {
    assert_eq!((a.width, a.height, a.channels), (b.width, b.height, b.channels), "concat of sets of other shapes");
    let labels = match (&a.labels, &b.labels) {
        (Some(x), Some(y)) => Some([x.as_slice(), y.as_slice()].concat()),
        _ => None,
    };
    let pixels = [a.pixels.as_slice(), b.pixels.as_slice()].concat();
    Dataset {
        name: a.name.clone(),
        width: a.width,
        height: a.height,
        channels: a.channels,
        pixels,
        labels,
        len: a.len + b.len,
    }
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
