"""The reference MLP VAE in PyTorch, as an independent check on elbo and as the
peer that `elbo bench --pytorch PYTHON` measures beside it.

    python3 tools/pytorch_vae.py eval runs/DIR/model.safetensors   # test loss of elbo's weights
    python3 tools/pytorch_vae.py step [--batch 128] [--steps 50]   # median training-step time, JSON
    python3 tools/pytorch_vae.py train [--epochs 10]               # the reference run, with per-epoch times

Needs torch, numpy and safetensors (pip install torch numpy safetensors)."""
import argparse, gzip, json, statistics, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class VAE(nn.Module):
    def __init__(self, pixels=784, hidden=400, latent=20):
        super().__init__()
        self.fc1 = nn.Linear(pixels, hidden)
        self.fc_mu = nn.Linear(hidden, latent)
        self.fc_logvar = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, pixels)

    def forward(self, x, sample=True):
        h = F.relu(self.fc1(x))
        mu, logvar = self.fc_mu(h), self.fc_logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        return self.fc4(F.relu(self.fc3(z))), mu, logvar


def loss_sums(logits, x, mu, logvar):
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon, kl


def mnist(data, split):
    raw = gzip.open(f"{data}/{split}-images-idx3-ubyte.gz").read()
    return torch.from_numpy(np.frombuffer(raw[16:], dtype=np.uint8).reshape(-1, 784).astype(np.float32) / 255.0)


def evaluate(model, x, sample=True):
    with torch.no_grad():
        r = k = 0.0
        for i in range(0, len(x), 1000):
            logits, mu, lv = model(x[i:i + 1000], sample)
            a, b = loss_sums(logits, x[i:i + 1000], mu, lv)
            r, k = r + a.item(), k + b.item()
    return (r + k) / len(x), r / len(x), k / len(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["eval", "step", "train"])
    p.add_argument("model", nargs="?")
    p.add_argument("--data", default="data/mnist")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--torchvision", action="store_true",
                   help="train: read MNIST through torchvision's dataset and ToTensor, as pytorch/examples does")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    if a.mode == "eval":
        from safetensors.torch import load_file
        from safetensors import safe_open
        with safe_open(a.model, "pt") as f:
            meta = f.metadata()
        model = VAE(int(meta["width"]) * int(meta["height"]), int(meta["hidden"]), int(meta["latent"]))
        model.load_state_dict(load_file(a.model))
        x = mnist(a.data, "t10k")
        loss, recon, kl = evaluate(model, x)
        mean_loss, _, _ = evaluate(model, x, sample=False)
        print(json.dumps({"test_loss": loss, "test_recon": recon, "test_kl": kl, "test_loss_at_mean": mean_loss}))
    elif a.mode == "step":
        model = VAE()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = mnist(a.data, "train")
        times = []
        for s in range(a.steps + 5):
            xb = x[(s * a.batch) % 59000:][: a.batch]
            t0 = time.perf_counter()
            opt.zero_grad()
            logits, mu, lv = model(xb)
            r, k = loss_sums(logits, xb, mu, lv)
            ((r + k) / len(xb)).backward()
            opt.step()
            if s >= 5:
                times.append((time.perf_counter() - t0) * 1e3)
        q = statistics.quantiles(times, n=10)
        print(json.dumps({"system": f"PyTorch {torch.__version__} CPU, {torch.get_num_threads()} threads", "batch": a.batch,
                          "median_ms": statistics.median(times), "p10_ms": q[0], "p90_ms": q[-1]}))
    else:
        model = VAE()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, xt = mnist(a.data, "train"), mnist(a.data, "t10k")
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
                xb = batch[0].reshape(-1, 784)
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
