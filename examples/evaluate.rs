//! The test set's -ELBO of a saved model, split into its reconstruction and KL terms:
//! `cargo run --release --example evaluate [MODEL.safetensors]` (default: what the
//! `train` example wrote).

use elbo::step::{ForwardOptions, Net};
use elbo::Gpu;

fn main() -> anyhow::Result<()> {
    let default = std::env::temp_dir().join("elbo-example.safetensors");
    let path = std::env::args().nth(1).map_or(default, Into::into);
    let gpu = Gpu::new(&Default::default())?;
    let (model, gemm) = elbo::infer::load_model(&path)?;
    let (_, test) = elbo::data::load_mnist(&elbo::data::mnist_dir(None))?;
    let options = ForwardOptions { batch: 128, samples: 1, binarize: false, seed: 1 };
    let mut net = Net::forward_only(&gpu, model, options, gemm, &test)?;
    let sums = net.evaluate()?;
    println!(
        "{} test images: -ELBO {:.2} = reconstruction {:.2} + KL {:.2} nats per image",
        test.len,
        sums.loss(1.0),
        sums.recon_per_image(),
        sums.kl_per_image()
    );
    Ok(())
}
