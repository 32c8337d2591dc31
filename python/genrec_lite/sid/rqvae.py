"""RQ-VAE in PyTorch: encoder MLP -> L residual codebooks of K codes -> decoder.

Codebooks start from k-means on the residuals of the untrained encoder's output, level by level;
codes that no item used since the last check are reset to residuals drawn from the data (dead-code
reset). Loss: reconstruction MSE + codebook loss + beta * commitment loss, straight-through
gradients through the quantiser. The final codes are not taken from this module: `build` runs the
exported numpy encoder and the C++ lookup, the same path that later gives new items their SIDs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InvalidArgumentError, require
from .kmeans import kmeans

torch = require("torch")
nn = torch.nn


@dataclass
class RQVAEConfig:
    levels: int = 3
    codebook_size: int = 256
    latent_dim: int = 32
    hidden: tuple[int, ...] = (512, 256, 128)
    epochs: int = 500
    batch_size: int = 1024
    lr: float = 1e-3
    weight_decay: float = 1e-4
    beta: float = 0.25
    kmeans_iters: int = 50
    reset_every: int = 25        # epochs between dead-code resets
    reset_until: float = 0.8     # fraction of training after which codes are left to settle
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def validate(self) -> "RQVAEConfig":
        if not 1 <= self.levels <= 8:
            raise InvalidArgumentError(f"levels={self.levels}; expected 1..8")
        if self.codebook_size < 2:
            raise InvalidArgumentError(f"codebook_size={self.codebook_size}; expected >= 2")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise InvalidArgumentError(
                f"epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}; expected positive")
        return self


def _mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i + 2 < len(dims):
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQVAE(nn.Module):
    def __init__(self, input_dim: int, cfg: RQVAEConfig):
        super().__init__()
        self.cfg = cfg
        dims = [input_dim, *cfg.hidden, cfg.latent_dim]
        self.encoder = _mlp(dims)
        self.decoder = _mlp(dims[::-1])
        self.codebooks = nn.Parameter(torch.zeros(cfg.levels, cfg.codebook_size, cfg.latent_dim))
        # Inputs are centred and scaled to unit variance per dimension on average: unit-norm
        # sentence embeddings have per-dimension variance ~1/d, too small a reconstruction signal
        # to keep the encoder from collapsing onto a few codes.
        self.register_buffer("input_mean", torch.zeros(input_dim))
        self.register_buffer("input_scale", torch.ones(()))

    def set_input_stats(self, x: "torch.Tensor") -> None:
        self.input_mean.copy_(x.mean(0))
        self.input_scale.copy_((x - self.input_mean).pow(2).mean().sqrt().clamp_min(1e-12))

    def normalize(self, x: "torch.Tensor") -> "torch.Tensor":
        return (x - self.input_mean) / self.input_scale

    @staticmethod
    def nearest(r: "torch.Tensor", book: "torch.Tensor") -> "torch.Tensor":
        d = (r * r).sum(1, keepdim=True) - 2.0 * r @ book.T + (book * book).sum(1)[None, :]
        return d.argmin(dim=1)

    def quantize(self, z: "torch.Tensor"):
        """Greedy residual quantisation: (quantised z, codes (n, L), codebook+commitment loss)."""
        residual = z
        quantized = torch.zeros_like(z)
        codes, loss = [], z.new_zeros(())
        for level in range(self.cfg.levels):
            book = self.codebooks[level]
            idx = self.nearest(residual.detach(), book.detach())
            e = book[idx]
            loss = loss + ((e - residual.detach()) ** 2).mean() \
                + self.cfg.beta * ((residual - e.detach()) ** 2).mean()
            quantized = quantized + e
            residual = residual - e.detach()
            codes.append(idx)
        return quantized, torch.stack(codes, dim=1), loss

    def forward(self, x: "torch.Tensor"):
        """x: normalised inputs (see normalize)."""
        z = self.encoder(x)
        q, codes, q_loss = self.quantize(z)
        z_q = z + (q - z).detach()  # straight-through: decoder sees codes, encoder gets gradients
        x_hat = self.decoder(z_q)
        recon = ((x_hat - x) ** 2).mean()
        return recon, q_loss, codes

    @torch.no_grad()
    def init_codebooks(self, x: "torch.Tensor", iters: int, rng: np.random.Generator) -> None:
        residual = self.encoder(x).numpy()
        for level in range(self.cfg.levels):
            centers, labels = kmeans(residual, self.cfg.codebook_size, iters=iters, seed=rng)
            self.codebooks.data[level] = torch.from_numpy(centers)
            residual = residual - centers[labels]

    def encoder_layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(weight, bias) of each encoder layer, the input normalisation folded into the first."""
        layers = [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
                  for m in self.encoder if isinstance(m, nn.Linear)]
        w, b = layers[0]
        scale = float(self.input_scale)
        mean = self.input_mean.double().numpy()
        layers[0] = (w / scale, b - (w @ mean) / scale)
        return [(w.astype(np.float32), b.astype(np.float32)) for w, b in layers]


def train_rqvae(vectors: np.ndarray, cfg: RQVAEConfig, *, progress: bool = True,
                log: list | None = None) -> RQVAE:
    """Train an RQ-VAE on item embeddings (n, d). Deterministic for a given seed and thread
    count on CPU: torch's deterministic algorithms are on while it trains (with 2 threads, two
    processes otherwise gave different codes for 29% of 3,000 items)."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train_rqvae(vectors, cfg, progress=progress, log=log)
    finally:
        torch.use_deterministic_algorithms(previous)


def _train_rqvae(vectors: np.ndarray, cfg: RQVAEConfig, *, progress: bool, log: list | None
                 ) -> RQVAE:
    from tqdm.auto import tqdm

    cfg.validate()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    raw = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    n = raw.shape[0]
    model = RQVAE(raw.shape[1], cfg)
    model.set_input_stats(raw)
    x = model.normalize(raw)
    model.init_codebooks(x, cfg.kmeans_iters, rng)
    # Weight decay on the MLPs only: decaying codewords would pull them towards the origin.
    mlp = [p for name, p in model.named_parameters() if name != "codebooks"]
    opt = torch.optim.AdamW([{"params": mlp, "weight_decay": cfg.weight_decay},
                             {"params": [model.codebooks], "weight_decay": 0.0}], lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    usage = torch.zeros(cfg.levels, cfg.codebook_size, dtype=torch.long)
    last_reset = int(cfg.epochs * cfg.reset_until)
    bar = tqdm(range(cfg.epochs), desc="RQ-VAE", unit="epoch", disable=not progress,
               mininterval=0.5)
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot_recon = tot_q = 0.0
        for s in range(steps_per_epoch):
            batch = x[perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]]
            recon, q_loss, codes = model(batch)
            loss = recon + q_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot_recon += recon.item()
            tot_q += q_loss.item()
            for level in range(cfg.levels):
                usage[level] += torch.bincount(codes[:, level], minlength=cfg.codebook_size)
        if cfg.reset_every and (epoch + 1) % cfg.reset_every == 0:
            if epoch < last_reset:
                _reset_dead_codes(model, x, usage, gen)
            usage.zero_()
        if log is not None:
            log.append({"epoch": epoch, "recon": tot_recon / steps_per_epoch,
                        "quant": tot_q / steps_per_epoch})
        bar.set_postfix(recon=f"{tot_recon / steps_per_epoch:.4f}", quant=f"{tot_q / steps_per_epoch:.4f}")
    model.eval()
    return model


@torch.no_grad()
def _reset_dead_codes(model: RQVAE, x: "torch.Tensor", usage: "torch.Tensor",
                      gen: "torch.Generator") -> None:
    """Move unused codes onto residuals of random items at their level."""
    z = model.encoder(x)
    residual = z
    for level in range(model.cfg.levels):
        book = model.codebooks.data[level]
        dead = torch.nonzero(usage[level] == 0).flatten()
        if dead.numel():
            pick = torch.randint(0, x.shape[0], (dead.numel(),), generator=gen)
            book[dead] = residual[pick] + 1e-3 * residual.std() * torch.randn(
                dead.numel(), residual.shape[1], generator=gen)
        idx = RQVAE.nearest(residual, book)
        residual = residual - book[idx]


def config_dict(cfg: RQVAEConfig) -> dict:
    d = asdict(cfg)
    d["hidden"] = list(cfg.hidden)
    return d
