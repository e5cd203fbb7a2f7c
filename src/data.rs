//! Datasets as bytes: one u8 per pixel, images back to back, ready to upload.

use crate::idx::read_idx;
use anyhow::{bail, Result};
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
