//! A folder's decoded images in path order, back to back: what the cache holds, and
//! what the seeded split divides into a training set and a test set.

use super::Dataset;
use anyhow::{bail, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::Path;

/// A folder's images, in path order, back to back.
pub(crate) struct Images {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub len: usize,
    /// len * height * width * channels bytes, as in [`Dataset::pixels`].
    pub pixels: Vec<u8>,
    /// Files that did not decode, left out.
    pub skipped: usize,
}

impl Images {
    /// Split at random (by `seed`) into `<folder>-train` and `<folder>-test`: the last
    /// `max(1, round(len * test_fraction))` images of a seeded shuffle are the test set.
    pub(crate) fn split(
        mut self,
        dir: &Path,
        folder: &str,
        test_fraction: f64,
        seed: u64,
    ) -> Result<(Dataset, Dataset)> {
        let len = self.len;
        let (order, n_test) = split_order(dir, len, test_fraction, seed)?;
        let image_len = self.width * self.height * self.channels;
        permute_images(&mut self.pixels, image_len, &order);
        let test_pixels = self.pixels.split_off((len - n_test) * image_len);
        self.pixels.shrink_to_fit();
        let (width, height, channels) = (self.width, self.height, self.channels);
        let set = |name: String, pixels: Vec<u8>, len: usize| Dataset {
            name,
            width,
            height,
            channels,
            pixels,
            labels: None,
            len,
        };
        let train = set(format!("{folder}-train"), self.pixels, len - n_test);
        let test = set(format!("{folder}-test"), test_pixels, n_test);
        Ok((train, test))
    }
}

/// The seeded split of `len` images (read from `dir`) into a training set and a test
/// set: a shuffle of 0..len whose last `max(1, round(len * test_fraction))` entries are
/// the test set's, and that count.
pub(crate) fn split_order(dir: &Path, len: usize, test_fraction: f64, seed: u64) -> Result<(Vec<usize>, usize)> {
    if len < 2 {
        bail!(
            "{} holds only {len} readable image; a training set and a test set need at least 2 images",
            dir.display()
        );
    }
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let n_test = ((len as f64 * test_fraction).round() as usize).clamp(1, len - 1);
    Ok((order, n_test))
}

/// Reorders the images in `pixels` (`image_len` bytes each) in place so that image j
/// becomes the former image `order[j]` (`order` a permutation): the gather the split
/// needs, without a second copy of a folder that may not fit twice in memory. Each
/// cycle of the permutation is walked once, holding one image aside.
fn permute_images(pixels: &mut [u8], image_len: usize, order: &[usize]) {
    let mut done = vec![false; order.len()];
    let mut held = vec![0u8; image_len];
    for start in 0..order.len() {
        if done[start] {
            continue;
        }
        held.copy_from_slice(&pixels[start * image_len..][..image_len]);
        let mut j = start;
        loop {
            done[j] = true;
            let from = order[j];
            if from == start {
                pixels[j * image_len..][..image_len].copy_from_slice(&held);
                break;
            }
            pixels.copy_within(from * image_len..(from + 1) * image_len, j * image_len);
            j = from;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::permute_images;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    /// The in-place permutation against a plain gather into a new buffer, on shuffles
    /// of several lengths (one image, cycles of every length) and image sizes.
    #[test]
    fn permute_images_is_the_gather() {
        for (len, image_len, seed) in [(1, 3, 0), (2, 1, 1), (7, 5, 2), (64, 12, 3), (301, 7, 4)] {
            let pixels: Vec<u8> = (0..len * image_len).map(|i| (i * 37 % 251) as u8).collect();
            let mut order: Vec<usize> = (0..len).collect();
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let want: Vec<u8> = order.iter().flat_map(|&i| pixels[i * image_len..][..image_len].to_vec()).collect();
            let mut got = pixels.clone();
            permute_images(&mut got, image_len, &order);
            let bad: Vec<(usize, u8, u8)> =
                got.iter().zip(&want).enumerate().filter(|(_, (g, w))| g != w).map(|(i, (&g, &w))| (i, g, w)).collect();
            assert!(
                bad.is_empty(),
                "{len} images of {image_len} bytes: {} bytes differ; first (index, got, want): {:?}",
                bad.len(),
                &bad[..bad.len().min(5)]
            );
        }
    }
}
