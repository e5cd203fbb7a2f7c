//! A training set larger than the device may hold at once is streamed in shards, and
//! computes what the same set resident computes.

mod common;
use common::{gpu, synthetic};
use elbo::data::Dataset;
use elbo::model::{Model, VaeConfig};
use elbo::train::{Hyper, Trainer};

/// The loss sums of three epochs and the parameters after them, with the training set
/// held under `limit` bytes (None: resident), and the shard size the trainer chose.
fn run(
    train: &Dataset,
    test: &Dataset,
    binarize: bool,
    limit: Option<u64>,
) -> (Vec<[f64; 2]>, Vec<f32>, Option<usize>) {
    let config = VaeConfig::mlp(train.width, train.height, 12, 3);
    let hyper = Hyper { binarize, data_limit: limit, ..Hyper::new(2e-3, 5) };
    let mut t = Trainer::new(gpu(), Model::init(&config, 5), hyper, 8, train, test).unwrap();
    let sums = (1..=3).map(|e| t.train_epoch(e).map(|s| [s.recon, s.kl]).unwrap()).collect();
    let shard = t.shard_images();
    (sums, t.model().unwrap().params.clone(), shard)
}

#[test]
fn a_streamed_training_set_trains_as_the_resident_one() {
    // 61 images of 7x5 bytes (35: not a whole number of words), batches of 8: a limit
    // of 600 bytes holds 2 batches (16 images, 560 bytes), so an epoch is 4 shards, the
    // last part-filled, and its last batch too
    let (train, test) = (synthetic(61, 7, 5, 1), synthetic(9, 7, 5, 2));
    for binarize in [false, true] {
        let (resident, p_resident, none) = run(&train, &test, binarize, None);
        let (streamed, p_streamed, shard) = run(&train, &test, binarize, Some(600));
        assert_eq!(none, None, "the small set should be resident");
        assert_eq!(shard, Some(16), "images per shard under a 600-byte limit");
        assert_eq!(streamed, resident, "loss sums per epoch, streamed vs resident (binarize {binarize})");
        let differ = p_streamed.iter().zip(&p_resident).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ,
            0,
            "{differ} of {} parameters differ after 3 epochs (binarize {binarize})",
            p_resident.len()
        );
    }
}

#[test]
fn a_limit_below_one_batch_names_the_largest_batch_that_fits() {
    let (train, test) = (synthetic(40, 7, 5, 1), synthetic(9, 7, 5, 2));
    let config = VaeConfig::mlp(7, 5, 12, 3);
    let hyper = Hyper { data_limit: Some(100), ..Hyper::new(2e-3, 5) };
    let err =
        Trainer::new(gpu(), Model::init(&config, 5), hyper, 8, &train, &test).err().expect("a batch over the limit");
    let text = format!("{err:#}");
    assert!(text.contains("at most 2"), "{text}");
}
