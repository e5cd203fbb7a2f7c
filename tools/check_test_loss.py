"""Independent check of an elbo model: loads model.safetensors with NumPy and
computes the MNIST test loss (-ELBO, nats per image) of the same MLP VAE with a
Bernoulli decoder: one hidden layer (fc1, fc3, fc4) or a stack of any depth
(encoder.0.., decoder.0.., the last decoder layer the output), with the hidden
activation the metadata names (relu, tanh, elu, leaky_relu).

    python3 tools/check_test_loss.py runs/DIR/model.safetensors [data/mnist] [--samples S]

With z sampled (one draw per image, as elbo's test_loss) the two numbers agree
to within Monte-Carlo noise (about 0.1 nats over 10,000 images); --mean uses
z = mu for a deterministic figure."""
import gzip, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

args = [a for a in sys.argv[1:] if not a.startswith("--")]
path = args[0]
data = args[1] if len(args) > 1 else "data/mnist"
w = load_file(path)
with safe_open(path, "np") as f:
    activation = (f.metadata() or {}).get("activation", "relu")
act = {
    "relu": lambda v: np.maximum(v, 0),
    "tanh": np.tanh,
    "elu": lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0))),
    "leaky_relu": lambda v: np.where(v > 0, v, 0.01 * v),
}[activation]

def idx(name):
    raw = gzip.open(f"{data}/{name}.gz").read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8).reshape(dims)

x = idx("t10k-images-idx3-ubyte").reshape(-1, 784).astype(np.float64) / 255.0
lin = lambda v, n: v @ w[n + ".weight"].astype(np.float64).T + w[n + ".bias"]
if "fc1.weight" in w:
    encoder, decoder = ["fc1"], ["fc3", "fc4"]
else:
    count = lambda part: len({k.split(".")[1] for k in w if k.startswith(part + ".")})
    encoder = [f"encoder.{i}" for i in range(count("encoder"))]
    decoder = [f"decoder.{i}" for i in range(count("decoder"))]
h = x
for name in encoder:
    h = act(lin(h, name))
mu, lv = lin(h, "fc_mu"), lin(h, "fc_logvar")
rng = np.random.default_rng(0)
z = mu if "--mean" in sys.argv else mu + np.exp(0.5 * lv) * rng.standard_normal(mu.shape)
for name in decoder[:-1]:
    z = act(lin(z, name))
logits = lin(z, decoder[-1])
bce = np.maximum(logits, 0) - x * logits + np.log1p(np.exp(-np.abs(logits)))
recon = bce.sum(1).mean()
kl = (-0.5 * (1 + lv - mu**2 - np.exp(lv))).sum(1).mean()
print(f"test_loss {recon + kl:.3f}  recon {recon:.3f}  kl {kl:.3f}")
