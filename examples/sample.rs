//! Draw 64 images from the prior of a saved model, forward-only:
//! `cargo run --release --example sample [MODEL.safetensors]` (default: what the
//! `train` example wrote).

use elbo::step::{ForwardOptions, Net};
use elbo::Gpu;

fn main() -> anyhow::Result<()> {
    let default = std::env::temp_dir().join("elbo-example.safetensors");
    let path = std::env::args().nth(1).map_or(default, Into::into);
    let gpu = Gpu::new(&Default::default())?;
    // the model, and the GEMM variants its training timed (so nothing is timed here)
    let (model, gemm) = elbo::infer::load_model(&path)?;
    let (_, test) = elbo::data::load_mnist(&elbo::data::mnist_dir(None))?;
    let options = ForwardOptions { batch: 64, samples: 1, binarize: false, seed: 1 };
    let mut net = Net::forward_only(&gpu, model, options, gemm, &test)?;
    let config = net.model().config.clone();
    let z: Vec<f32> = (0..64 * config.latent).map(|i| elbo::rng::rand_normal(1, 3, 0, i as u32)).collect();
    let images = net.decode(&z)?;
    let tiles: Vec<&[f32]> = images.chunks(config.pixels()).collect();
    let out = std::env::temp_dir().join("elbo-example-samples.png");
    elbo::plot::grid::save_grid(&out, &tiles, &elbo::plot::grid::Grid::of(&config, 8))?;
    println!("wrote {}", out.display());
    Ok(())
}
