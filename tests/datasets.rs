//! Image folders as datasets: the shipped faces, generated PNGs and JPEGs of
//! mixed sizes, damaged and missing folders, and the centre crop.

mod common;
use common::Scratch;

use elbo::data::{crop_to_multiple, faces_dir, load_faces, load_image_folder, Dataset};
use image::{GrayImage, Luma, Rgb, RgbImage};
use std::path::{Path, PathBuf};

fn tmp_dir(name: &str) -> Scratch {
    Scratch::created(&format!("test-datasets-{name}"))
}

fn err_of(r: anyhow::Result<impl std::fmt::Debug>) -> String {
    format!("{:#}", r.expect_err("expected an error"))
}

/// An RGB image whose pixels vary with position, so that resizing has something to do.
fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8]))
}

fn save(img: &RgbImage, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

/// Every image of both sets, sorted, to compare splits as multisets.
fn all_images(sets: &[&Dataset]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = sets.iter().flat_map(|d| (0..d.len).map(|i| d.image(i).to_vec())).collect();
    v.sort();
    v
}

/// The first few (index, got, want) beyond `tol`, or None when all bytes are within it.
fn mismatches(got: &[u8], want: impl Fn(usize) -> u8, tol: u8) -> Option<String> {
    let bad: Vec<_> =
        got.iter().enumerate().filter(|&(i, &g)| g.abs_diff(want(i)) > tol).map(|(i, &g)| (i, g, want(i))).collect();
    (!bad.is_empty()).then(|| {
        format!(
            "{} of {} bytes off by more than {tol}; first (index, got, want): {:?}",
            bad.len(),
            got.len(),
            &bad[..bad.len().min(5)]
        )
    })
}

#[test]
fn shipped_faces_load_and_split_by_seed() {
    let dir = faces_dir(None);
    let (train, test) = load_faces(&dir, 0.1, 7).unwrap();
    assert_eq!((train.len, test.len), (90, 10), "{train:?} {test:?}");
    for d in [&train, &test] {
        assert_eq!((d.width, d.height, d.channels), (25, 25, 1), "{d:?}");
        assert_eq!(d.pixels.len(), d.len * 25 * 25);
        assert!(d.labels.is_none());
    }
    assert_eq!((train.name.as_str(), test.name.as_str()), ("faces-train", "faces-test"));

    // The split is a permutation of the files, decoded here independently.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 100);
    let mut want: Vec<Vec<u8>> = files.iter().map(|f| image::open(f).unwrap().to_luma8().into_raw()).collect();
    want.sort();
    assert!(all_images(&[&train, &test]) == want, "train + test are not the 100 shipped images");

    let (train2, test2) = load_faces(&dir, 0.1, 7).unwrap();
    assert!(train2.pixels == train.pixels && test2.pixels == test.pixels, "same seed, different split");
    let (_, test3) = load_faces(&dir, 0.1, 8).unwrap();
    assert!(test3.pixels != test.pixels, "seeds 7 and 8 gave the same test set");
}

#[test]
fn mixed_sizes_resize_to_the_given_size() {
    let dir = tmp_dir("mixed");
    save(&gradient(20, 10), &dir.join("a.png"));
    save(&gradient(40, 40), &dir.join("b.PNG"));
    save(&gradient(16, 12), &dir.join("c.jpg"));
    GrayImage::from_pixel(9, 30, Luma([200])).save(dir.join("d.jpeg")).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an image").unwrap();
    let (train, test) = load_image_folder(&dir, 3, Some((16, 12)), 0.25, 1).unwrap();
    assert_eq!((train.len, test.len), (3, 1));
    for d in [&train, &test] {
        assert_eq!((d.width, d.height, d.channels), (16, 12, 3), "{d:?}");
        assert_eq!(d.pixels.len(), d.len * 16 * 12 * 3);
    }
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(train.name, format!("{name}-train"));
    assert_eq!(test.name, format!("{name}-test"));
    let (train, test) = load_image_folder(&dir, 1, Some((16, 12)), 0.25, 1).unwrap();
    assert_eq!((train.pixels.len() + test.pixels.len(), train.channels), (4 * 16 * 12, 1));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn solid_red_comes_out_red() {
    let dir = tmp_dir("red");
    let red = Rgb([255, 0, 0]);
    save(&RgbImage::from_pixel(40, 30, red), &dir.join("big.png"));
    save(&RgbImage::from_pixel(10, 10, red), &dir.join("small.png"));
    save(&RgbImage::from_pixel(33, 17, red), &dir.join("photo.jpg"));
    let (train, test) = load_image_folder(&dir, 3, Some((16, 12)), 0.3, 3).unwrap();
    for d in [&train, &test] {
        if let Some(m) = mismatches(&d.pixels, |i| [255, 0, 0][i % 3], 2) {
            panic!("{d:?} in RGB: {m}");
        }
    }
    // Luma of sRGB red, as `image` weighs it: 0.2126 * 255 = 54.
    let (train, test) = load_image_folder(&dir, 1, Some((16, 12)), 0.3, 3).unwrap();
    for d in [&train, &test] {
        if let Some(m) = mismatches(&d.pixels, |_| 54, 2) {
            panic!("{d:?} in greyscale: {m}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn mixed_sizes_without_a_size_name_the_option() {
    let dir = tmp_dir("mixed-nosize");
    save(&gradient(20, 10), &dir.join("a.png"));
    save(&gradient(20, 10), &dir.join("b.png"));
    save(&gradient(12, 12), &dir.join("c.png"));
    let e = err_of(load_image_folder(&dir, 1, None, 0.2, 0));
    assert!(e.contains("--image-size"), "{e}");
    assert!(e.contains("a.png") && e.contains("c.png") && e.contains("20x10") && e.contains("12x12"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn empty_missing_and_garbage_folders_are_errors() {
    let empty = tmp_dir("empty");
    std::fs::write(empty.join("README.md"), "no images here").unwrap();
    let e = err_of(load_image_folder(&empty, 1, None, 0.1, 0));
    assert!(e.contains(&empty.display().to_string()) && e.contains("PNG or JPEG"), "{e}");

    let missing = empty.join("nonexistent");
    let e = err_of(load_image_folder(&missing, 1, None, 0.1, 0));
    assert!(e.contains(&missing.display().to_string()) && e.contains("does not exist"), "{e}");

    let file = empty.join("README.md");
    let e = err_of(load_image_folder(&file, 1, None, 0.1, 0));
    assert!(e.contains(&file.display().to_string()) && e.contains("not a folder"), "{e}");

    let garbage = tmp_dir("garbage");
    for i in 0..3 {
        std::fs::write(garbage.join(format!("{i}.png")), b"these bytes are not a PNG at all").unwrap();
    }
    let e = err_of(load_image_folder(&garbage, 1, None, 0.1, 0));
    assert!(e.contains(&garbage.display().to_string()) && e.contains("0.png"), "{e}");

    // One good image among three bad ones is still too few.
    save(&gradient(8, 8), &garbage.join("good.png"));
    let e = err_of(load_image_folder(&garbage, 1, None, 0.1, 0));
    assert!(e.contains(&garbage.display().to_string()) && e.contains("3 of the 4"), "{e}");
    let _ = std::fs::remove_dir_all(&empty);
    let _ = std::fs::remove_dir_all(&garbage);
}

#[test]
fn one_corrupt_file_is_skipped() {
    let dir = tmp_dir("one-corrupt");
    for i in 0..4 {
        save(&gradient(8 + i, 8), &dir.join(format!("{i}.png")));
    }
    std::fs::write(dir.join("broken.png"), &std::fs::read(dir.join("0.png")).unwrap()[..40]).unwrap();
    let (train, test) = load_image_folder(&dir, 3, Some((8, 8)), 0.25, 0).unwrap();
    assert_eq!(train.len + test.len, 4, "{train:?} {test:?}");
    assert_eq!(test.len, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nested_subfolders_are_found() {
    let dir = tmp_dir("nested");
    save(&gradient(6, 5), &dir.join("top.png"));
    save(&gradient(6, 5), &dir.join("a/one.jpg"));
    save(&gradient(6, 5), &dir.join("a/b/c/deep.JPEG"));
    save(&gradient(6, 5), &dir.join("d/two.png"));
    let (train, test) = load_image_folder(&dir, 3, None, 0.5, 0).unwrap();
    assert_eq!((train.len, test.len), (2, 2));
    assert_eq!((train.width, train.height), (6, 5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_are_errors() {
    let dir = tmp_dir("arguments");
    save(&gradient(6, 5), &dir.join("a.png"));
    let e = err_of(load_image_folder(&dir, 1, None, 0.5, 0));
    assert!(e.contains("at least 2 images"), "{e}");
    save(&gradient(6, 5), &dir.join("b.png"));
    assert!(load_image_folder(&dir, 1, None, 0.5, 0).is_ok());
    for f in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
        let e = err_of(load_image_folder(&dir, 1, None, f, 0));
        assert!(e.contains("test fraction"), "{f}: {e}");
    }
    let e = err_of(load_image_folder(&dir, 2, None, 0.5, 0));
    assert!(e.contains("greyscale (1) or RGB (3)"), "{e}");
    let e = err_of(load_image_folder(&dir, 1, Some((0, 4)), 0.5, 0));
    assert!(e.contains("0x4"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A dataset whose byte at (image, y, x, channel) is a known function of those four.
fn patterned(len: usize, width: usize, height: usize, channels: usize) -> Dataset {
    let value = |n: usize, y: usize, x: usize, c: usize| (n * 31 + y * 7 + x * 3 + c * 50) as u8;
    let mut pixels = Vec::new();
    for n in 0..len {
        for y in 0..height {
            for x in 0..width {
                pixels.extend((0..channels).map(|c| value(n, y, x, c)));
            }
        }
    }
    Dataset { name: "pattern".into(), width, height, channels, pixels, labels: Some((0..len as u8).collect()), len }
}

#[test]
fn crop_to_multiple_keeps_the_centre() {
    for (w, h, c, want_w, want_h, left, top) in
        [(25, 25, 1, 24, 24, 0, 0), (30, 27, 3, 28, 24, 1, 1), (8, 11, 1, 8, 8, 0, 1)]
    {
        let ds = patterned(3, w, h, c);
        let out = crop_to_multiple(&ds, 4);
        assert_eq!((out.width, out.height, out.channels, out.len), (want_w, want_h, c, 3), "{w}x{h}");
        assert_eq!(out.pixels.len(), 3 * want_w * want_h * c);
        assert_eq!(out.labels, ds.labels);
        let at = |n: usize, y: usize, x: usize, ch: usize| ds.image(n)[(y * w + x) * c + ch];
        let got = &out.pixels;
        let want = |i: usize| {
            let (n, rest) = (i / (want_w * want_h * c), i % (want_w * want_h * c));
            at(n, rest / (want_w * c) + top, rest % (want_w * c) / c + left, rest % c)
        };
        if let Some(m) = mismatches(got, want, 0) {
            panic!("{w}x{h}x{c} cropped to {want_w}x{want_h}: {m}");
        }
        // One pixel by hand: the second image's top-left after the crop.
        assert_eq!(out.image(1)[0], at(1, top, left, 0));
    }
    let (train, _) = load_faces(&faces_dir(None), 0.1, 0).unwrap();
    let faces = crop_to_multiple(&train, 4);
    assert_eq!((faces.width, faces.height, faces.len), (24, 24, 90));
    assert_eq!(faces.image(5)[23 * 24 + 23], train.image(5)[23 * 25 + 23]);
}
