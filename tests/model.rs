//! The model as a file and a layer list, without a GPU: safetensors round trips,
//! PyTorch's tensor names for every depth, and the metadata of older files.

mod common;
use common::small_models;

use elbo::model::{Activation, Arch, Layout, Likelihood, Model, VaeConfig};

#[test]
fn safetensors_round_trip_is_exact() {
    for (name, config, _) in small_models() {
        let model = Model::init(&config, 12);
        let bytes = model.to_safetensors(&Default::default()).unwrap();
        let back = Model::from_safetensors(&bytes).unwrap();
        assert_eq!(back.config, config, "{name}");
        assert_eq!(back.params, model.params, "{name}: parameters changed in a round trip");
    }
    let config = VaeConfig::mlp(7, 3, 10, 3);
    let model = Model::init(&config, 12);
    let bytes = model.to_safetensors(&Default::default()).unwrap();
    let mut damaged = bytes.clone();
    damaged.truncate(bytes.len() - 10);
    assert!(Model::from_safetensors(&damaged).is_err());
}

#[test]
fn dense_stacks_are_named_and_read_back() {
    let names = |c: &VaeConfig| -> Vec<String> {
        let m = Model::init(c, 1);
        let st = m.to_safetensors(&Default::default()).unwrap();
        let mut n: Vec<String> =
            safetensors::SafeTensors::deserialize(&st).unwrap().names().into_iter().map(String::from).collect();
        n.sort();
        n
    };
    // one hidden layer keeps pytorch/examples' names
    let one = VaeConfig::mlp(5, 6, 13, 3);
    let want: Vec<&str> = vec!["fc1.bias", "fc1.weight", "fc3.bias", "fc3.weight", "fc4.bias", "fc4.weight"];
    let got = names(&one);
    assert!(want.iter().all(|w| got.iter().any(|g| g == w)), "{got:?}");
    // a stack: encoder.i and decoder.i, the output split for a Gaussian decoder
    let stack = VaeConfig { hidden: vec![7, 5], likelihood: Likelihood::Gaussian, ..one.clone() };
    let got = names(&stack);
    for w in [
        "encoder.0.weight",
        "encoder.1.bias",
        "fc_mu.weight",
        "fc_logvar.bias",
        "decoder.0.weight",
        "decoder.1.weight",
        "decoder.2.weight",
        "decoder.2_logvar.weight",
    ] {
        assert!(got.iter().any(|g| g == w), "no {w} in {got:?}");
    }
    let model = Model::init(&stack, 3);
    let back = Model::from_safetensors(&model.to_safetensors(&Default::default()).unwrap()).unwrap();
    assert_eq!(back.config.hidden, vec![7, 5]);
    assert!(back.params == model.params, "the stack's parameters changed in a round trip");
    // a decoder that does not mirror the encoder is recorded and read back
    let own = VaeConfig { decoder_hidden: Some(vec![9]), ..stack.clone() };
    let got = names(&own);
    assert!(got.iter().any(|g| g == "decoder.1.weight") && !got.iter().any(|g| g == "decoder.2.weight"), "{got:?}");
    let back = Model::from_safetensors(&Model::init(&own, 3).to_safetensors(&Default::default()).unwrap()).unwrap();
    assert_eq!(back.config, own);
    // metadata written before stacks existed: one width, and a conv model's 0 for none
    let mut meta = one.to_metadata();
    meta.insert("hidden".into(), "400".into());
    assert_eq!(VaeConfig::from_metadata(&meta).unwrap().hidden, vec![400]);
    let conv = VaeConfig { arch: Arch::Conv, width: 8, height: 4, conv_channels: vec![4, 8], hidden: vec![], ..one };
    let mut meta = conv.to_metadata();
    meta.insert("hidden".into(), "0".into());
    assert_eq!(VaeConfig::from_metadata(&meta).unwrap().hidden, Vec::<usize>::new());
    // no hidden layer: the heads read the image, one decoder layer writes it
    let none = Layout::new(&VaeConfig { hidden: vec![], ..VaeConfig::mlp(5, 6, 13, 3) });
    assert!(none.encoder.is_empty());
    assert_eq!(none.decoder.len(), 1);
    assert_eq!(none.heads.input.cols(), 30);
}

#[test]
fn the_activation_is_recorded_and_read_back() {
    // every hidden layer takes the model's activation; the heads and the output none
    let tanh = VaeConfig { hidden: vec![7, 5], activation: Activation::Tanh, ..VaeConfig::mlp(5, 6, 13, 3) };
    let layout = Layout::new(&tanh);
    let acts: Vec<Activation> = layout.layers().iter().map(|l| l.act).collect();
    let (tanh_, none) = (Activation::Tanh, Activation::Identity);
    assert_eq!(acts, vec![tanh_, tanh_, none, tanh_, tanh_, none], "activations of {:?}", layout.layers());
    for act in [Activation::Relu, Activation::Tanh, Activation::Elu, Activation::LeakyRelu] {
        let c = VaeConfig { activation: act, ..tanh.clone() };
        let meta = c.to_metadata();
        assert_eq!(meta["activation"], act.name());
        assert_eq!(VaeConfig::from_metadata(&meta).unwrap().activation, act);
    }
    // files written before the choice existed are ReLU models; an unknown name is an error
    let mut meta = tanh.to_metadata();
    meta.remove("activation");
    assert_eq!(VaeConfig::from_metadata(&meta).unwrap().activation, Activation::Relu);
    meta.insert("activation".into(), "swish".into());
    let err = VaeConfig::from_metadata(&meta).unwrap_err().to_string();
    assert!(err.contains("activation") && err.contains("swish"), "{err}");
}

#[test]
fn conv_stacks_are_named_and_read_back() {
    // 64x64 RGB with four stride-2 layers ends at 4x4: enc.conv1..4 and dec.deconv1..4
    let c = VaeConfig {
        arch: Arch::Conv,
        width: 64,
        height: 64,
        channels: 3,
        conv_channels: vec![32, 64, 128, 256],
        hidden: vec![],
        latent: 128,
        likelihood: Likelihood::Gaussian,
        ..VaeConfig::mlp(64, 64, 0, 128)
    };
    c.check().unwrap();
    let model = Model::init(&c, 1);
    let shapes: std::collections::HashMap<String, Vec<usize>> =
        model.layout.tensors(&c).into_iter().map(|t| (t.name, t.shape)).collect();
    let want: [(&str, &[usize]); 8] = [
        ("enc.conv1.weight", &[32, 3, 4, 4]),
        ("enc.conv4.weight", &[256, 128, 4, 4]),
        ("fc_mu.weight", &[128, 256 * 4 * 4]),
        ("dec.fc.weight", &[256 * 4 * 4, 128]),
        ("dec.deconv1.weight", &[256, 128, 4, 4]),
        ("dec.deconv3.weight", &[64, 32, 4, 4]),
        // the last transposed convolution writes the means and log-variances of 3 channels
        ("dec.deconv4.weight", &[32, 6, 4, 4]),
        ("dec.deconv4.bias", &[6]),
    ];
    for (name, shape) in want {
        assert_eq!(shapes.get(name).map(Vec::as_slice), Some(shape), "{name} in {:?}", shapes.keys());
    }
    assert_eq!(shapes.len(), 4 * 2 + 4 + 2 + 4 * 2, "{:?}", shapes.keys());
    let back = Model::from_safetensors(&model.to_safetensors(&Default::default()).unwrap()).unwrap();
    assert_eq!(back.config, c);
    assert!(back.params == model.params, "the conv stack's parameters changed in a round trip");
    // the last layer has no activation, every other one the model's
    let layout = Layout::new(&c);
    let no_act: Vec<&str> = layout.layers().iter().filter(|l| !l.act.is_some()).map(|l| l.name.as_str()).collect();
    assert_eq!(no_act, vec!["heads", "dec.deconv4"]);
    // a depth the image cannot take, and an empty or zero list, are errors naming the flag
    for (channels, size, wanted) in
        [(vec![8; 5], 16, "at most 4"), (vec![], 16, "--channels"), (vec![8, 0], 16, "--channels")]
    {
        let bad = VaeConfig { conv_channels: channels.clone(), width: size, height: size, ..c.clone() };
        let err = bad.check().unwrap_err().to_string();
        assert!(err.contains(wanted), "{channels:?} at {size}x{size}: {err}");
    }
}

#[test]
fn a_model_past_the_device_limits_names_the_largest_values_that_fit() {
    use elbo::model::fit::{check_fits, overflow, DeviceLimits};
    let lim = DeviceLimits { texture_side: 16384, buffer_bytes: 128 << 20 };
    // parameters past one buffer: the widest hidden layer that fits, and one more does not
    let wide = VaeConfig::mlp(28, 28, 100_000, 20);
    let err = check_fits(&wide, 128, 1, &lim).unwrap_err().to_string();
    let at_most = |text: &str, key: &str| -> usize {
        let rest = &text[text.find(key).unwrap_or_else(|| panic!("no {key:?} in {text}")) + key.len()..];
        rest.trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let w = at_most(&err, "--hidden widths of at most");
    assert!(err.contains("parameters"), "{err}");
    assert!(overflow(&VaeConfig { hidden: vec![w], ..wide.clone() }, 128, &lim).is_none(), "{w} does not fit: {err}");
    assert!(
        overflow(&VaeConfig { hidden: vec![w + 1], ..wide.clone() }, 128, &lim).is_some(),
        "{w} is not the largest"
    );
    // a batch whose rows pass a texture side: the largest batch
    let small = DeviceLimits { texture_side: 64, buffer_bytes: 128 << 20 };
    let err = check_fits(&VaeConfig::mlp(8, 8, 32, 4), 100, 1, &small).unwrap_err().to_string();
    assert!(err.contains("--batch-size 64"), "{err}");
    // Monte-Carlo samples are rows too: 16 images of 10 samples pass 64 rows; 4 samples fit
    let err = check_fits(&VaeConfig::mlp(8, 8, 32, 4), 16, 10, &small).unwrap_err().to_string();
    assert!(err.contains("--mc-samples 4") && err.contains("--batch-size 6"), "{err}");
    // images too large for the convolutions' textures: a smaller size, a multiple of 4
    let conv = VaeConfig { arch: Arch::Conv, channels: 3, hidden: vec![], ..VaeConfig::mlp(256, 256, 0, 16) };
    let err = check_fits(&conv, 4, 1, &lim).unwrap_err().to_string();
    assert!(err.contains("--image-size 64x64"), "{err}");
    // and a model that fits passes
    check_fits(&VaeConfig::mlp(28, 28, 400, 20), 128, 1, &lim).unwrap();
}

/// The same model with the same metadata is the same file, byte for byte: the header's
/// keys are written in sorted order, not in a hash map's (which changes from map to map).
#[test]
fn the_same_model_is_the_same_file() {
    let model = Model::init(&VaeConfig::mlp(28, 28, 40, 5), 3);
    let extra = || {
        (0..12)
            .map(|i| (format!("key{i}"), format!("value {i}")))
            .collect::<std::collections::HashMap<String, String>>()
    };
    let files: Vec<Vec<u8>> = (0..4).map(|_| model.to_safetensors(&extra()).unwrap()).collect();
    assert!(files.windows(2).all(|w| w[0] == w[1]), "four saves of one model differ");
    // and the metadata's keys read in order in the header
    let n = u64::from_le_bytes(files[0][..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&files[0][8..8 + n]).unwrap();
    let at = |k: &str| header.find(&format!("\"{k}\"")).unwrap_or_else(|| panic!("{k} missing: {header}"));
    assert!(at("key0") < at("key1") && at("key1") < at("key10") && at("key10") < at("key2"), "{header}");
    assert_eq!(Model::from_safetensors(&files[0]).unwrap().params, model.params, "the file reads back");
}
