"""The reference MLP VAE in PyTorch, as an independent check on elbo and as the
peer that `elbo bench --pytorch PYTHON` measures beside it.

    python3 tools/pytorch_vae.py eval runs/DIR/model.safetensors   # test loss of elbo's weights
    python3 tools/pytorch_vae.py eval runs/DIR --images DIR        # ... on a folder of images (elbo eval --images)
    python3 tools/pytorch_vae.py eval runs/DIR --iw-samples 1000 --binarized --limit 500
                                            # ... and the importance-weighted log p(x) (elbo eval's)
    python3 tools/pytorch_vae.py step [--batch 128] [--steps 50]   # median training-step time, JSON
    python3 tools/pytorch_vae.py step --device cuda                # the same on an NVIDIA GPU (eager mode)
    python3 tools/pytorch_vae.py train [--epochs 10]               # the reference run, with per-epoch times

Needs torch, numpy and safetensors (pip install torch numpy safetensors)."""
import argparse, gzip, json, math, statistics, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "elu": F.elu, "leaky_relu": F.leaky_relu}


class VAE(nn.Module):
    def __init__(self, pixels=784, hidden=400, latent=20, decoder_hidden=None, act="relu"):
        super().__init__()
        back = decoder_hidden or hidden
        self.fc1 = nn.Linear(pixels, hidden)
        self.fc_mu = nn.Linear(hidden, latent)
        self.fc_logvar = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, back)
        self.fc4 = nn.Linear(back, pixels)
        self.act = ACTIVATIONS[act]

    def forward(self, x, sample=True):
        h = self.act(self.fc1(x))
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        return self.fc4(self.act(self.fc3(z))), mu, logvar


class StackVAE(nn.Module):
    """elbo's MLP with any number of hidden layers but one (one is `VAE`, with
    pytorch/examples' names): encoder.0.., the heads, decoder.0.. mirroring the encoder,
    the last decoder layer the output (and decoder.N_logvar beside it for a Gaussian
    decoder, whose output is [means | raw log-variances])."""

    def __init__(self, pixels, hidden, latent, gaussian=False, decoder=None, act="relu"):
        super().__init__()
        widths = [pixels] + list(hidden)
        self.encoder = nn.ModuleDict({str(i): nn.Linear(a, b) for i, (a, b) in enumerate(zip(widths, widths[1:]))})
        self.fc_mu = nn.Linear(widths[-1], latent)
        self.fc_logvar = nn.Linear(widths[-1], latent)
        decoder = list(reversed(hidden)) if decoder is None else list(decoder)
        back = [latent] + decoder + [pixels]
        layers = {str(i): nn.Linear(a, b) for i, (a, b) in enumerate(zip(back, back[1:]))}
        if gaussian:
            layers[f"{len(decoder)}_logvar"] = nn.Linear(back[-2], pixels)
        self.decoder = nn.ModuleDict(layers)
        self.n_enc, self.n, self.gaussian = len(hidden), len(decoder), gaussian
        self.act = ACTIVATIONS[act]

    def forward(self, x, sample=True):
        h = x
        for i in range(self.n_enc):
            h = self.act(self.encoder[str(i)](h))
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        d = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        for i in range(self.n):
            d = self.act(self.decoder[str(i)](d))
        out = self.decoder[str(self.n)](d)
        if self.gaussian:
            out = torch.cat([out, self.decoder[f"{self.n}_logvar"](d)], 1)
        return out, mu, logvar


class ConvVAE(nn.Module):
    """elbo's --model conv: 4x4 stride-2 convolutions enc.conv1..N (one per entry of
    `channels`), the latent heads on their flattened output (through dense layers where
    `hidden` lists them: enc.fc alone, enc.fc0.. in a stack), mirrored by dense layers
    (dec.fc0..), a dense layer dec.fc to the deepest convolution's shape and 4x4 stride-2
    transposed convolutions dec.deconv1..N back to the image's planes."""

    def __init__(self, h=28, w=28, c=1, channels=(32, 64), hidden=(), latent=16, planes=1, decoder=None,
                 act="relu"):
        super().__init__()
        channels, hidden, n = list(channels), list(hidden), len(channels)
        self.shape = (channels[-1], h >> n, w >> n)
        feat = channels[-1] * (h >> n) * (w >> n)
        self.enc = nn.Module()
        for i, (a, b) in enumerate(zip([c] + channels, channels)):
            setattr(self.enc, f"conv{i + 1}", nn.Conv2d(a, b, 4, 2, 1))
        widths = [feat] + hidden
        self.enc_fc = [f"fc{i}" if len(hidden) > 1 else "fc" for i in range(len(hidden))]
        for name, a, b in zip(self.enc_fc, widths, widths[1:]):
            setattr(self.enc, name, nn.Linear(a, b))
        self.fc_mu = nn.Linear(widths[-1], latent)
        self.fc_logvar = nn.Linear(widths[-1], latent)
        self.dec = nn.Module()
        back = [latent] + (list(reversed(hidden)) if decoder is None else list(decoder))
        for i, (a, b) in enumerate(zip(back, back[1:])):
            setattr(self.dec, f"fc{i}", nn.Linear(a, b))
        self.n_fc = len(back) - 1
        self.dec.fc = nn.Linear(back[-1], feat)
        up = list(reversed(channels)) + [planes * c]
        for j, (a, b) in enumerate(zip(up, up[1:])):
            setattr(self.dec, f"deconv{j + 1}", nn.ConvTranspose2d(a, b, 4, 2, 1))
        self.n_conv, self.c, self.act = n, c, ACTIVATIONS[act]

    def forward(self, x, sample=True):
        h = x
        for i in range(self.n_conv):
            h = self.act(getattr(self.enc, f"conv{i + 1}")(h))
        h = h.flatten(1)
        for name in self.enc_fc:
            h = self.act(getattr(self.enc, name)(h))
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        for i in range(self.n_fc):
            z = self.act(getattr(self.dec, f"fc{i}")(z))
        d = self.act(self.dec.fc(z)).view(-1, *self.shape)
        for j in range(self.n_conv):
            d = getattr(self.dec, f"deconv{j + 1}")(d)
            if j + 1 < self.n_conv:
                d = self.act(d)
        return d, mu, logvar


def loss_sums(out, x, mu, logvar, gaussian=False, channels=1):
    """-log p(x|z) and KL, summed; `out` holds logits, or means then raw log-variances
    (along dim 1: channels for convolutional models, features for the MLP)."""
    if gaussian:
        split = channels if out.dim() == 4 else x.shape[1]
        mean, raw = out[:, :split], out[:, split:]
        lv = -1.5 + 2.5 * torch.tanh(raw)
        recon = torch.sum(0.5 * (math.log(2 * math.pi) + lv + (x - torch.sigmoid(mean)) ** 2 * torch.exp(-lv)))
    else:
        recon = F.binary_cross_entropy_with_logits(out, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon, kl


def mnist(data, split):
    raw = gzip.open(f"{data}/{split}-images-idx3-ubyte.gz").read()
    return torch.from_numpy(np.frombuffer(raw[16:], dtype=np.uint8).reshape(-1, 784).astype(np.float32) / 255.0)


def folder_images(path, h, w, c):
    """Every PNG/JPEG under `path` (or the one file), in elbo's order (sorted paths), as
    floats in [0, 1], (n, h, w, c): the images must already be of the model's size, as
    resizing filters differ between libraries."""
    import os
    from PIL import Image
    if os.path.isfile(path):
        files = [path]
    else:
        files = sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs
                       if f.lower().endswith((".png", ".jpg", ".jpeg")))
    out = []
    for f in files:
        img = Image.open(f).convert("L" if c == 1 else "RGB")
        if img.size != (w, h):
            sys.exit(f"{f} is {img.size[0]}x{img.size[1]}; the model takes {w}x{h} (resize the images first)")
        out.append(np.asarray(img, dtype=np.float32).reshape(h, w, c) / 255.0)
    return torch.from_numpy(np.stack(out))


def test_images(a, h, w, c, conv):
    """The evaluation set: --images (a folder or a file) or MNIST's test split, laid out
    as the model reads it: (n, c, h, w) for convolutions, flattened (h, w, c) for the MLP."""
    x = folder_images(a.images, h, w, c) if a.images else mnist(a.data, "t10k").view(-1, 28, 28, 1)
    return x.permute(0, 3, 1, 2).contiguous() if conv else x.reshape(len(x), -1)


def recon_rows(out, x, gaussian=False, channels=1):
    """-log p(x|z) of each row, summed over its values (loss_sums' terms, per row)."""
    if gaussian:
        split = channels if out.dim() == 4 else x.shape[1]
        mean, raw = out[:, :split], out[:, split:]
        lv = -1.5 + 2.5 * torch.tanh(raw)
        nll = 0.5 * (math.log(2 * math.pi) + lv + (x - torch.sigmoid(mean)) ** 2 * torch.exp(-lv))
    else:
        nll = F.binary_cross_entropy_with_logits(out, x, reduction="none")
    return nll.reshape(len(nll), -1).sum(1)


def iw_log_px(model, x, k, gaussian=False, channels=1):
    """Each image's log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x), in float64
    from the densities written out here. The model draws z itself (torch.randn_like in its
    forward pass): the draws are read as they are made."""
    drawn = []
    real = torch.randn_like

    def keep(t):
        e = real(t)
        drawn.append(e)
        return e

    half_log_2pi = 0.5 * math.log(2 * math.pi)
    out_per_image = []
    n = max(1, 2000 // k)
    torch.randn_like = keep
    try:
        with torch.no_grad():
            for i in range(0, len(x), n):
                xr = x[i:i + n].repeat_interleave(k, 0)
                out, mu, lv = model(xr, True)
                e = drawn.pop().double()
                mu, lv = mu.double(), lv.double()
                z = mu + torch.exp(0.5 * lv) * e
                log_q = (-half_log_2pi - 0.5 * lv - 0.5 * e ** 2).sum(1)
                log_p = (-half_log_2pi - 0.5 * z ** 2).sum(1)
                log_w = (-recon_rows(out, xr, gaussian, channels).double() + log_p - log_q).view(-1, k)
                out_per_image.append(torch.logsumexp(log_w, 1) - math.log(k))
    finally:
        torch.randn_like = real
    return torch.cat(out_per_image)


def evaluate(model, x, sample=True, gaussian=False, channels=1):
    with torch.no_grad():
        r = k = 0.0
        for i in range(0, len(x), 1000):
            out, mu, lv = model(x[i:i + 1000], sample)
            a, b = loss_sums(out, x[i:i + 1000], mu, lv, gaussian, channels)
            r, k = r + a.item(), k + b.item()
    return (r + k) / len(x), r / len(x), k / len(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["eval", "step", "train"])
    p.add_argument("model", nargs="?")
    p.add_argument("--data", default="data/mnist")
    p.add_argument("--images", help="eval: a folder of images (or one) at the model's size, in place of MNIST's test set")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="cpu", help="step, train: the torch device to run on (cpu, cuda)")
    p.add_argument("--conv", action="store_true", help="step: the convolutional VAE (32-64 channels, latent 16)")
    p.add_argument("--rgb64", action="store_true",
                   help="step: the 64x64 RGB convolutional VAE (32-64-128-256 channels, latent 128) on random images")
    p.add_argument("--iw-samples", type=int, default=0,
                   help="eval: also the importance-weighted log p(x) with this many draws an image (elbo eval --iw-samples)")
    p.add_argument("--binarized", action="store_true",
                   help="eval: score the test images binarized at random once (elbo eval --binarized)")
    p.add_argument("--limit", type=int, help="eval: the first N test images only")
    p.add_argument("--torchvision", action="store_true",
                   help="train: read MNIST through torchvision's dataset and ToTensor, as pytorch/examples does")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    if a.model and not a.model.endswith(".safetensors"):
        a.model = f"{a.model}/model.safetensors"  # a run folder
    if a.mode == "eval":
        from safetensors.torch import load_file
        from safetensors import safe_open
        with safe_open(a.model, "pt") as f:
            meta = f.metadata()
        h, w, c = int(meta["height"]), int(meta["width"]), int(meta["channels"])
        gaussian = meta["likelihood"] == "gaussian"
        # hidden widths, comma-separated; a lone 0 (older convolutional models) is none
        hidden = [int(v) for v in meta["hidden"].split(",") if v and v != "0"]
        decoder = [int(v) for v in meta["decoder_hidden"].split(",") if v] if "decoder_hidden" in meta else None
        act = meta.get("activation", "relu")
        if meta["arch"] == "conv":
            channels = [int(v) for v in meta["conv_channels"].split(",")]
            model = ConvVAE(h, w, c, channels, hidden, int(meta["latent"]), 2 if gaussian else 1, decoder, act)
        elif len(hidden) != 1 or (decoder is not None and len(decoder) != 1):
            model = StackVAE(w * h * c, hidden, int(meta["latent"]), gaussian, decoder, act)
        else:
            back = decoder[0] if decoder else hidden[0]
            model = VAE(w * h * c, hidden[0], int(meta["latent"]), back, act)
            if gaussian:
                model.fc4_logvar = nn.Linear(back, w * h * c)
                def forward(x, sample=True, model=model):
                    hh = model.act(model.fc1(x))
                    mu, lv = model.fc_mu(hh), model.fc_logvar(hh)
                    z = mu + torch.exp(0.5 * lv) * torch.randn_like(mu) if sample else mu
                    d = model.act(model.fc3(z))
                    return torch.cat([model.fc4(d), model.fc4_logvar(d)], 1), mu, lv
                model.forward = forward
        x = test_images(a, h, w, c, meta["arch"] == "conv")
        if a.limit:
            x = x[:a.limit]
        if a.binarized:
            x = torch.bernoulli(x)
        model.load_state_dict(load_file(a.model))
        loss, recon, kl = evaluate(model, x, True, gaussian, c)
        mean_loss, mean_recon, _ = evaluate(model, x, False, gaussian, c)
        report = {"test_loss": loss, "test_recon": recon, "test_kl": kl, "test_loss_at_mean": mean_loss,
                  "test_recon_at_mean": mean_recon}
        if a.iw_samples > 0:
            per_image = iw_log_px(model, x, a.iw_samples, gaussian, c)
            report.update({"iw_samples": a.iw_samples, "images": len(x), "log_px": per_image.mean().item(),
                           "log_px_se": (per_image.std() / math.sqrt(len(x))).item() if len(x) > 1 else 0.0})
        print(json.dumps(report))
    elif a.mode == "step":
        dev = torch.device(a.device)
        if a.rgb64:
            model = ConvVAE(64, 64, 3, (32, 64, 128, 256), (), 128).to(dev)
            x = torch.rand(512, 3, 64, 64, device=dev)
        else:
            model = (ConvVAE() if a.conv else VAE()).to(dev)
            x = mnist(a.data, "train").to(dev)
            if a.conv:
                x = x.view(-1, 1, 28, 28)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        # each step ends when the device is done, as elbo's timed steps do
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        times = []
        for s in range(a.steps + 5):
            xb = x[(s * a.batch) % max(1, len(x) - a.batch):][: a.batch]
            sync()
            t0 = time.perf_counter()
            opt.zero_grad()
            logits, mu, lv = model(xb)
            r, k = loss_sums(logits, xb, mu, lv)
            ((r + k) / len(xb)).backward()
            opt.step()
            sync()
            if s >= 5:
                times.append((time.perf_counter() - t0) * 1e3)
        q = statistics.quantiles(times, n=10)
        where = (f"CUDA ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda"
                 else f"CPU, {torch.get_num_threads()} threads")
        print(json.dumps({"system": f"PyTorch {torch.__version__} {where}", "batch": a.batch,
                          "model": ("conv-vae 64x64x3 32-64-128-256-128" if a.rgb64
                                    else "conv-vae 32-64-16" if a.conv else "mlp-vae 784-400-20"),
                          "median_ms": statistics.median(times), "p10_ms": q[0], "p90_ms": q[-1]}))
    else:
        dev = torch.device(a.device)
        model = VAE().to(dev)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, xt = mnist(a.data, "train"), mnist(a.data, "t10k").to(dev)
        if a.torchvision:
            import os, shutil, tempfile
            from torchvision import datasets, transforms
            root = tempfile.mkdtemp()
            os.makedirs(f"{root}/MNIST/raw")
            for f in os.listdir(a.data):
                if f.endswith(".gz"):
                    shutil.copy(f"{a.data}/{f}", f"{root}/MNIST/raw/{f}")
                    with gzip.open(f"{a.data}/{f}") as src, open(f"{root}/MNIST/raw/{f[:-3]}", "wb") as dst:
                        dst.write(src.read())
            ds = datasets.MNIST(root, train=True, download=False, transform=transforms.ToTensor())
            loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True)
        else:
            loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=a.batch, shuffle=True)
        for epoch in range(1, a.epochs + 1):
            t0 = time.perf_counter()
            total = 0.0
            for batch in loader:
                xb = batch[0].reshape(-1, 784).to(dev)
                opt.zero_grad()
                logits, mu, lv = model(xb)
                r, k = loss_sums(logits, xb, mu, lv)
                ((r + k) / len(xb)).backward()
                opt.step()
                total += (r + k).item()
            secs = time.perf_counter() - t0
            loss, recon, kl = evaluate(model, xt)
            print(json.dumps({"epoch": epoch, "train_loss": total / len(x), "test_loss": loss, "test_recon": recon,
                              "test_kl": kl, "epoch_seconds": secs, "images_per_second": len(x) / secs}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
