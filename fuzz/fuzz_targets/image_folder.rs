//! The image-folder loader on an arbitrary file named .png beside a valid one: errors or
//! a skipped file, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("elbo-fuzz-images-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let good = image::GrayImage::from_pixel(4, 4, image::Luma([128]));
    let _ = good.save(dir.join("a.png"));
    let _ = good.save(dir.join("b.png"));
    if std::fs::write(dir.join("c.png"), data).is_ok() {
        let _ = elbo::data::load_image_folder(&dir, 1, Some((4, 4)), 0.5, 1);
    }
});
