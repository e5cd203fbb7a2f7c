//! A folder of images is decoded once and cached: the second load reads the cache
//! and gives the same bytes; any change to the folder or to the pixels asked for names
//! a new cache; a damaged cache is ignored and rebuilt; `--no-cache` writes nothing.
//! The cache folder is a parameter here (tests run in parallel threads and the
//! environment is the process's); the CLI test at the end sets it for a child process.

mod common;
use common::Scratch;

use elbo::data::cache::HEADER_LEN;
use elbo::data::{crop_to_multiple, load_image_folder, Dataset, FolderLoad, ImageSource, Source, TrainSet};
use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};

/// An RGB image whose pixels vary with position and with `i`, so that every image
/// differs and resizing has something to do.
fn picture(w: u32, h: u32, i: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7 + i * 40) as u8, (y * 5 + i * 3) as u8, (((x + y) * 3) ^ i) as u8]))
}

/// A scratch folder of `n` PNGs of different sizes, two of them in a subfolder.
fn image_folder(name: &str, n: u32) -> Scratch {
    let dir = Scratch::created(&format!("test-folder-cache-{name}"));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..n {
        let at = if i < 2 { dir.join("sub").join(format!("{i}.png")) } else { dir.join(format!("{i}.png")) };
        picture(12 + i, 9 + i % 3, i).save(at).unwrap();
    }
    dir
}

/// The loading options of these tests: RGB, resized to 8x6, a quarter held out, seed 1.
fn options(cache: Option<&Path>) -> FolderLoad {
    FolderLoad {
        channels: 3,
        size: Some((8, 6)),
        test_fraction: 0.25,
        seed: 1,
        cache_dir: cache.map(Path::to_path_buf),
        quiet: true,
    }
}

/// The datasets and the source of one load, which must succeed.
fn load(dir: &Path, opts: &FolderLoad) -> (Dataset, Dataset, Source) {
    opts.load(dir).unwrap_or_else(|e| panic!("loading {} with {opts:?}: {e:#}", dir.display()))
}

/// The cache file a load wrote, or a failure saying where the images came from.
fn written(source: &Source) -> PathBuf {
    match source {
        Source::Decoded(Some(path)) => path.clone(),
        other => panic!("expected the images decoded and cached, they came from {other:?}"),
    }
}

/// Asserts that `got` and `want` are the same dataset, byte for byte; on failure
/// prints the shapes, the count of bytes that differ and the first (index, got, want).
fn assert_same(what: &str, got: &Dataset, want: &Dataset) {
    let shape = |d: &Dataset| (d.name.clone(), d.len, d.width, d.height, d.channels, d.pixels.len());
    assert_eq!(shape(got), shape(want), "{what}: (name, len, width, height, channels, bytes) differ");
    let bad: Vec<(usize, u8, u8)> = got
        .pixels
        .iter()
        .zip(&want.pixels)
        .enumerate()
        .filter(|(_, (g, w))| g != w)
        .map(|(i, (&g, &w))| (i, g, w))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} bytes differ; first (index, got, want): {:?}",
        bad.len(),
        got.pixels.len(),
        &bad[..bad.len().min(6)]
    );
}

/// Asserts that both sets of a load are those of `want`.
fn assert_same_sets(what: &str, got: &(Dataset, Dataset, Source), want: &(Dataset, Dataset)) {
    assert_same(&format!("{what}, training set"), &got.0, &want.0);
    assert_same(&format!("{what}, test set"), &got.1, &want.1);
}

/// The files in `dir`, by name, sorted (none when it does not exist).
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn the_second_load_reads_the_cache_and_gives_the_same_bytes() {
    let dir = image_folder("second", 6);
    let cache = Scratch::new("test-folder-cache-second-cache");
    let decoded = load_image_folder(&dir, 3, Some((8, 6)), 0.25, 1).unwrap();

    let first = load(&dir, &options(Some(&cache)));
    let path = written(&first.2);
    assert_same_sets("first load, cached", &first, &decoded);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("{folder}-8x6x3-")) && name.ends_with(".u8"), "{name}");
    assert_eq!(path.parent(), Some(&*cache), "the cache file is in the cache folder");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), HEADER_LEN + 6 * 8 * 6 * 3, "header + 6 images of 8x6x3");

    let second = load(&dir, &options(Some(&cache)));
    assert_eq!(second.2, Source::Cache(path.clone()), "the second load did not read the cache");
    assert_same_sets("second load, from the cache", &second, &decoded);

    // the split comes after the cache: another seed and fraction read the same file
    let other = FolderLoad { seed: 9, test_fraction: 0.5, ..options(Some(&cache)) };
    let resplit = load(&dir, &other);
    assert_eq!(resplit.2, Source::Cache(path.clone()));
    assert_same_sets(
        "seed 9, half held out, from the cache",
        &resplit,
        &load_image_folder(&dir, 3, Some((8, 6)), 0.5, 9).unwrap(),
    );

    // the images come from the file, not from decoding: its pixels overwritten (header
    // kept) are what the datasets hold
    let mut painted = bytes.clone();
    painted[HEADER_LEN..].fill(77);
    std::fs::write(&path, &painted).unwrap();
    let (train, test, source) = load(&dir, &options(Some(&cache)));
    assert_eq!(source, Source::Cache(path.clone()));
    for d in [&train, &test] {
        let off: Vec<_> = d.pixels.iter().enumerate().filter(|(_, &p)| p != 77).take(5).collect();
        assert!(off.is_empty(), "{d:?} does not hold the cache file's bytes; first (index, byte): {off:?}");
    }
    assert_eq!(files_in(&cache), vec![name], "one cache file, no temporary file left");
}

#[test]
fn a_streaming_load_leaves_the_training_set_in_the_cache_file() {
    let dir = image_folder("streaming", 9);
    let cache = Scratch::new("test-folder-cache-streaming-cache");
    let opts = options(Some(&cache));
    let (want_train, want_test) = load_image_folder(&dir, 3, Some((8, 6)), 0.25, 1).unwrap();

    // no cache yet: decoded, cached, and the training set kept in memory
    let (train, test, source) = opts.load_streaming(&dir).unwrap();
    let path = written(&source);
    let TrainSet::Memory(first) = train else { panic!("a decoded training set should stay in memory") };
    assert_same_sets("first streaming load", &(first, test, source), &(want_train.clone(), want_test.clone()));

    // from the cache: the training set stays in the file and reads as the decoded one,
    // image by image in any order (the file is read at each image's place)
    let (train, test, source) = opts.load_streaming(&dir).unwrap();
    assert_eq!(source, Source::Cache(path.clone()), "the second load did not read the cache");
    assert!(matches!(train, TrainSet::Cached(_)), "the training set was read into memory");
    assert_eq!(train.dims(), want_train.dims(), "(width, height, channels, images) of the training set");
    assert_same("test set, from the cache", &test, &want_test);
    let mut image = vec![0u8; want_train.image_len()];
    for i in (0..want_train.len).rev() {
        train.read_image(i, &mut image).unwrap();
        assert_eq!(image, want_train.image(i), "training image {i} read from {}", path.display());
    }
    let name = train.name().to_string();
    assert_same("training set, read whole from the cache", &train.into_dataset().unwrap(), &want_train);
    assert_eq!(name, want_train.name);

    // cut and cropped as a convolutional model's training set is, each image cropped as it is read
    let (mut cut, _, _) = opts.load_streaming(&dir).unwrap();
    cut.truncate(4);
    cut.crop_to_multiple(4);
    let mut want = crop_to_multiple(&want_train, 4);
    want.truncate(4);
    assert_eq!((cut.dims().width, cut.dims().height), (8, 4), "8x6 cropped to a multiple of 4");
    assert_same("4 training images cropped to 8x4, from the cache", &cut.into_dataset().unwrap(), &want);
}

/// Three epochs' loss sums and the parameters after them, training on `train` with the
/// device's share of the training set held under `limit` bytes (None: resident).
fn train_three_epochs(train: &dyn ImageSource, test: &Dataset, limit: Option<u64>) -> (Vec<[f64; 2]>, Vec<f32>) {
    use elbo::model::{Model, VaeConfig};
    use elbo::train::{Hyper, Trainer};
    let d = train.dims();
    let config = VaeConfig::mlp(d.width, d.height, 12, 3);
    let hyper = Hyper { data_limit: limit, ..Hyper::new(2e-3, 5) };
    let mut t = Trainer::new(common::gpu(), Model::init(&config, 5), hyper, 8, train, test).unwrap();
    assert_eq!(t.shard_images(), limit.map(|_| 16), "images per shard under the limit {limit:?}");
    let sums = (1..=3).map(|e| t.train_epoch(e).map(|s| [s.recon, s.kl]).unwrap()).collect();
    (sums, t.model().unwrap().params.clone())
}

#[test]
fn a_training_set_streamed_from_the_cache_file_trains_as_in_memory() {
    let dir = image_folder("stream-train", 40);
    let cache = Scratch::new("test-folder-cache-stream-train-cache");
    // greyscale 7x5 (35 bytes an image, not whole words), 30 training images; a limit of
    // 600 bytes holds 2 batches of 8: two shards an epoch, the second part-filled
    let opts = FolderLoad { channels: 1, size: Some((7, 5)), ..options(Some(&cache)) };
    let (memory, test, _) = load(&dir, &opts);
    let (cached, _, source) = opts.load_streaming(&dir).unwrap();
    assert!(matches!(source, Source::Cache(_)) && matches!(cached, TrainSet::Cached(_)), "not read from the cache");
    assert_eq!(memory.len, 30);
    let (resident, p_resident) = train_three_epochs(&memory, &test, None);
    let (streamed, p_streamed) = train_three_epochs(&cached, &test, Some(600));
    assert_eq!(streamed, resident, "loss sums per epoch, streamed from the cache file vs resident from memory");
    let differ = p_streamed.iter().zip(&p_resident).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} of {} parameters differ after 3 epochs", p_resident.len());
}

#[test]
fn native_size_and_skipped_files_are_cached_too() {
    let dir = Scratch::created("test-folder-cache-native");
    for i in 0..5 {
        picture(7, 5, i).save(dir.join(format!("{i}.png"))).unwrap();
    }
    std::fs::write(dir.join("broken.png"), b"not a PNG").unwrap();
    let cache = Scratch::new("test-folder-cache-native-cache");
    let opts = FolderLoad { size: None, channels: 1, test_fraction: 0.4, ..options(Some(&cache)) };
    let decoded = load_image_folder(&dir, 1, None, 0.4, 1).unwrap();

    let first = load(&dir, &opts);
    let path = written(&first.2);
    assert!(path.file_name().unwrap().to_string_lossy().contains("-nativex1-"), "{}", path.display());
    assert_same_sets("native size, decoded", &first, &decoded);
    // the header records the 5 images kept and the 1 file left out (cache.rs's layout)
    let bytes = std::fs::read(&path).unwrap();
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap());
    assert_eq!((u64_at(24), u64_at(32)), (5, 1), "(count, skipped) in the header");
    assert_eq!(bytes.len(), HEADER_LEN + 5 * 7 * 5);

    let second = load(&dir, &opts);
    assert_eq!(second.2, Source::Cache(path));
    assert_same_sets("native size, from the cache", &second, &decoded);
}

#[test]
fn a_changed_folder_or_request_names_a_new_cache() {
    let dir = image_folder("changes", 5);
    let cache = Scratch::new("test-folder-cache-changes-cache");
    let key_a = written(&load(&dir, &options(Some(&cache))).2);

    // touched: same bytes, a new modification time
    let touched = dir.join("3.png");
    let was = std::fs::metadata(&touched).unwrap().modified().unwrap();
    let file = std::fs::File::options().write(true).open(&touched).unwrap();
    file.set_modified(was + std::time::Duration::from_secs(5)).unwrap();
    let after_touch = load(&dir, &options(Some(&cache)));
    let key_b = written(&after_touch.2);
    assert_ne!(key_b, key_a, "touching a file kept the key");
    assert_same_sets("after the touch", &after_touch, &load_image_folder(&dir, 3, Some((8, 6)), 0.25, 1).unwrap());

    // a cache of another key under this key's name is refused and rebuilt
    std::fs::copy(&key_a, &key_b).unwrap();
    assert_eq!(written(&load(&dir, &options(Some(&cache))).2), key_b, "a file of another key was read");
    assert_eq!(load(&dir, &options(Some(&cache))).2, Source::Cache(key_b.clone()));

    // the time put back: the first key again, and its file is read
    file.set_modified(was).unwrap();
    assert_eq!(
        load(&dir, &options(Some(&cache))).2,
        Source::Cache(key_a.clone()),
        "the time put back: not the first key"
    );

    // a file added, then removed; another size; another channel count
    picture(20, 20, 9).save(dir.join("sub/added.png")).unwrap();
    let key_c = written(&load(&dir, &options(Some(&cache))).2);
    std::fs::remove_file(dir.join("sub/added.png")).unwrap();
    std::fs::remove_file(dir.join("4.png")).unwrap();
    let key_d = written(&load(&dir, &options(Some(&cache))).2);
    let key_e = written(&load(&dir, &FolderLoad { size: Some((6, 8)), ..options(Some(&cache)) }).2);
    let key_f = written(&load(&dir, &FolderLoad { channels: 1, ..options(Some(&cache)) }).2);
    let keys = [&key_a, &key_b, &key_c, &key_d, &key_e, &key_f];
    let mut names: Vec<String> = keys.iter().map(|k| k.file_name().unwrap().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(files_in(&cache), names, "six keys, six files, no temporary file");
    names.dedup();
    assert_eq!(names.len(), 6, "two changes gave the same key: {names:?}");
}

/// A change made to a cache file's bytes.
type Damage = fn(&mut Vec<u8>);

#[test]
fn a_damaged_cache_is_ignored_and_rebuilt() {
    let dir = image_folder("damaged", 6);
    let cache = Scratch::new("test-folder-cache-damaged-cache");
    let decoded = load_image_folder(&dir, 3, Some((8, 6)), 0.25, 1).unwrap();
    let path = written(&load(&dir, &options(Some(&cache))).2);
    let good = std::fs::read(&path).unwrap();
    let damages: [(&str, Damage); 7] = [
        ("one byte short", |b| {
            b.pop();
        }),
        ("cut inside the header", |b| b.truncate(20)),
        ("empty", |b| b.clear()),
        ("one byte too many", |b| b.push(0)),
        ("magic changed", |b| b[0] ^= 1),
        ("format version changed", |b| b[8] = 99),
        ("image count changed (the checksum no longer matches)", |b| b[24] ^= 1),
    ];
    for (what, damage) in damages {
        let mut bytes = good.clone();
        damage(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let rebuilt = load(&dir, &options(Some(&cache)));
        assert_eq!(written(&rebuilt.2), path, "{what}: not rebuilt under the same name");
        assert_same_sets(&format!("{what}, rebuilt"), &rebuilt, &decoded);
        assert!(std::fs::read(&path).unwrap() == good, "{what}: the rebuilt file differs from the first one");
        assert_eq!(load(&dir, &options(Some(&cache))).2, Source::Cache(path.clone()), "{what}: rebuilt, not read");
    }
    assert_eq!(files_in(&cache).len(), 1, "no temporary file left: {:?}", files_in(&cache));
}

#[test]
fn no_cache_folder_and_an_unwritable_one_decode_and_go_on() {
    let dir = image_folder("unwritable", 4);
    let decoded = load_image_folder(&dir, 3, Some((8, 6)), 0.25, 1).unwrap();
    let none = load(&dir, &options(None));
    assert_eq!(none.2, Source::Decoded(None));
    assert_same_sets("no cache", &none, &decoded);

    // a cache folder that cannot be made: its parent is a file
    let blocker = Scratch::created("test-folder-cache-blocker");
    std::fs::write(blocker.join("file"), b"a file, not a folder").unwrap();
    let unwritable = blocker.join("file/cache");
    let blocked = load(&dir, &options(Some(&unwritable)));
    assert_eq!(blocked.2, Source::Decoded(None), "an unwritable cache folder");
    assert_same_sets("unwritable cache folder", &blocked, &decoded);
    assert_eq!(files_in(&blocker), vec!["file".to_string()], "nothing written beside the blocking file");
}

/// `elbo train` on a folder, loading the dataset and then stopping at a validation set
/// larger than the training set (checked once the images are loaded), with `env` set for
/// the child: its stderr.
fn train_loads(dir: &Path, flags: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = common::elbo_command();
    cmd.args(["train", "--dataset"]).arg(dir).args(["--channels-in", "3", "--image-size", "8x6"]);
    cmd.args(flags).args(["--validation", "1000000", "--out"]).arg(dir.join("run"));
    for var in ["ELBO_CACHE_DIR", "XDG_CACHE_HOME", "HOME"] {
        cmd.env_remove(var);
    }
    for (var, value) in env {
        cmd.env(var, value);
    }
    let out = cmd.env("NODEVICE_SELECT", "1").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && err.contains("--validation 1000000"), "expected the validation error: {err}");
    err
}

#[test]
fn the_train_command_finds_the_cache_folder_and_no_cache_writes_nothing() {
    let dir = image_folder("cli", 4);
    let place = Scratch::created("test-folder-cache-cli-cache");
    let elbo_dir = place.join("elbo-cache");

    let err = train_loads(&dir, &["--no-cache"], &[("ELBO_CACHE_DIR", &elbo_dir)]);
    assert!(!elbo_dir.exists(), "--no-cache made {}: {err}", elbo_dir.display());
    assert!(!err.contains("cached"), "{err}");

    let err = train_loads(&dir, &[], &[("ELBO_CACHE_DIR", &elbo_dir)]);
    let written = files_in(&elbo_dir);
    assert_eq!(written.len(), 1, "{written:?}: {err}");
    let line = format!("cached 4 images (8x6 RGB, 576 B) in {}", elbo_dir.join(&written[0]).display());
    assert!(err.contains(&line), "no line {line:?} in: {err}");

    let err = train_loads(&dir, &[], &[("ELBO_CACHE_DIR", &elbo_dir)]);
    let line = format!("reading 4 cached images from {}", elbo_dir.join(&written[0]).display());
    assert!(err.contains(&line), "no line {line:?} in: {err}");
    let err = train_loads(&dir, &["--quiet"], &[("ELBO_CACHE_DIR", &elbo_dir)]);
    assert!(!err.contains("cached"), "--quiet printed the cache line: {err}");

    // without ELBO_CACHE_DIR: XDG_CACHE_HOME, else HOME
    let xdg = place.join("xdg");
    let home = place.join("home");
    train_loads(&dir, &[], &[("XDG_CACHE_HOME", &xdg), ("HOME", &home)]);
    assert_eq!(files_in(&xdg.join("elbo/datasets")), written, "XDG_CACHE_HOME/elbo/datasets");
    train_loads(&dir, &[], &[("HOME", &home)]);
    assert_eq!(files_in(&home.join(".cache/elbo/datasets")), written, "HOME/.cache/elbo/datasets");
    let err = train_loads(&dir, &[], &[]);
    assert!(err.contains("warning: no cache folder"), "{err}");
}
