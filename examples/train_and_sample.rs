//! Train a small VAE on MNIST for one epoch and save 16 samples, using elbo as
//! a library: `cargo run --release --example train_and_sample`.

use elbo::{Gpu, Hyper, Model, Trainer, VaeConfig};

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new(&Default::default())?;
    println!("adapter: {}", gpu.adapter_line());
    let (train, test) = elbo::data::load_mnist(&elbo::data::mnist_dir(None))?;
    let config = VaeConfig::mlp(28, 28, 256, 16);
    let mut trainer = Trainer::new(&gpu, Model::init(&config, 7), Hyper::new(1e-3, 7), 128, &train, &test)?;
    trainer.set_order(&(0..train.len as u32).collect::<Vec<_>>())?;
    for b in 0..trainer.train_batches() {
        trainer.train_step(b);
    }
    println!("after one epoch: test -ELBO {:.2} nats per image", trainer.evaluate()?.loss(1.0));
    let z: Vec<f32> = (0..16 * config.latent).map(|i| elbo::rng::rand_normal(7, 3, 0, i as u32)).collect();
    let images = trainer.decode(&z)?;
    let tiles: Vec<&[f32]> = images.chunks(config.pixels()).collect();
    let path = std::env::temp_dir().join("elbo-example-samples.png");
    elbo::plot::grid::save_grid(&path, &tiles, 28, 28, 1, 8, 3)?;
    println!("wrote {}", path.display());
    Ok(())
}
