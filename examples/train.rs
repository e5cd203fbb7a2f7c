//! Train a small VAE on MNIST with elbo as a library, and save it:
//! `cargo run --release --example train`. The `sample` and `evaluate` examples open
//! what it writes.

use elbo::{Gpu, Hyper, Model, Trainer, VaeConfig};

fn main() -> anyhow::Result<()> {
    // the best adapter: a GPU, or Mesa's lavapipe on a machine without one
    let gpu = Gpu::new(&Default::default())?;
    let (train, test) = elbo::data::load_mnist(&elbo::data::mnist_dir(None))?;
    // 784-256-16 with a Bernoulli decoder, PyTorch's initialisation from seed 7
    let config = VaeConfig::mlp(28, 28, 256, 16);
    let mut trainer = Trainer::new(&gpu, Model::init(&config, 7), Hyper::new(1e-3, 7), 128, &train, &test)?;
    for epoch in 1..=2 {
        let train_loss = trainer.train_epoch(epoch)?.loss(1.0);
        let test_loss = trainer.evaluate()?.loss(1.0);
        println!("epoch {epoch}: -ELBO {train_loss:.2} (training), {test_loss:.2} (test) nats per image");
    }
    let path = std::env::temp_dir().join("elbo-example.safetensors");
    trainer.save_model(&path, Default::default())?;
    println!("wrote {}", path.display());
    Ok(())
}
