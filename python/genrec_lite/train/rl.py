"""Reinforcement learning after SFT: group-relative policy optimisation over the constrained beam.

For a batch of next-item cases drawn from the training sequences, the policy's constrained beam
search (the C++ runtime over a GGUF snapshot of the policy, refreshed every
``snapshot_every`` updates) proposes ``group`` distinct items per case. Each gets a reward:
``hit`` (1 for the case's next item, else 0) or ``ndcg`` (1 for the next item; a wrong item
loses in proportion to 1 / log2(rank + 2), the weight NDCG@K gives that rank, the losses of a
group summing to 1). Advantages are group-relative: (r - mean) / (std + eps) within the case's
group. The loss is

    - mean over candidates of  A * log p(SID | prompt)  +  kl * KL estimate to the SFT model

where log p is the policy's raw log-probability of the candidate's SID tokens (teacher forced,
whole vocabulary) and the KL estimate is k3 = exp(d) - d - 1, d = log p_sft - log p, on the same
candidates. Validation NDCG@10 (the same runtime over a fresh snapshot, beam 20, a fixed
sample of the validation cases) is measured before training and every ``eval_every`` updates; the best weights are kept
and training stops after ``patience`` measurements without a gain, so RL never ships a model
worse on validation than the SFT model it started from.

Validation is the checkpoint's own split's: for a model whose training includes its validation
period (a final split such as temporal:T with valid.jsonl before T) the early stopping then
measures fit, not generalisation; run RL on the tuning split's model to choose the steps. One
SID view only (a multi-view model's group would need every view's SID of each candidate).
Measured on amazon-industrial (docs/training.md): with these defaults it did not beat the SFT
model on validation there.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_directory, write_json
from ..errors import InvalidArgumentError, require

torch = require("torch")

REWARDS = ("hit", "ndcg")


@dataclass
class RLConfig:
    steps: int = 300              # policy updates at most
    cases_per_step: int = 16      # next-item cases per update
    group: int = 16               # candidates per case: the top of the constrained beam
    beam: int = 20                # beam width of the rollouts (>= group)
    reward: str = "ndcg"
    lr: float = 2e-5
    kl: float = 0.05              # weight of the KL anchor to the SFT model
    grad_clip: float = 1.0
    snapshot_every: int = 10      # updates between GGUF snapshots of the policy (rollouts)
    eval_every: int = 50          # updates between validations
    eval_cases: int = 500         # validation sample (fixed, seeded)
    patience: int = 2             # validations without a gain before stopping
    max_minutes: float | None = None
    seed: int = 0
    threads: int | None = None

    def validate(self) -> "RLConfig":
        if self.reward not in REWARDS:
            raise InvalidArgumentError(f"reward={self.reward!r}; expected one of {REWARDS}")
        for name in ("steps", "cases_per_step", "group", "beam", "snapshot_every", "eval_every",
                     "eval_cases", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InvalidArgumentError(f"{name}={v!r}; expected an integer >= 1")
        if self.group < 2 or self.beam < self.group:
            raise InvalidArgumentError(f"group={self.group}, beam={self.beam}; expected "
                                       "2 <= group <= beam (advantages are relative to the group)")
        if not (self.lr > 0 and self.kl >= 0):
            raise InvalidArgumentError(f"lr={self.lr}, kl={self.kl}; expected lr > 0, kl >= 0")
        return self


def rewards(items: list[int], target: int, kind: str) -> np.ndarray:
    """Each candidate's reward (candidates best first)."""
    r = np.zeros(len(items), dtype=np.float64)
    hit = np.array([i == target for i in items])
    r[hit] = 1.0
    if kind == "ndcg" and (~hit).any():
        w = 1.0 / np.log2(np.arange(len(items)) + 2.0)
        w[hit] = 0.0
        r -= w / w.sum()
    return r


def advantages(r: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Group-relative advantages: zero for a group whose rewards are all equal."""
    sd = r.std()
    return np.zeros_like(r) if sd < eps else (r - r.mean()) / (sd + eps)


def sid_logprobs(model, tok, prompts: list[str], sid_tokens: list[list[int]], device) -> "torch.Tensor":
    """log p(SID tokens | prompt) under `model` for each (prompt, SID) pair: the sum over the
    SID's tokens of their log-softmax over the whole vocabulary (teacher forced)."""
    from .trainer import _pack

    enc = [tok(p, add_special_tokens=True)["input_ids"] for p in prompts]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids, mask, labels = _pack([(e + s, [-100] * len(e) + s) for e, s in zip(enc, sid_tokens)],
                              pad, device)
    logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
    target = labels[:, 1:]
    keep = target != -100
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * keep).sum(dim=1)


def _groups(rec, cases, size: int, beam: int, profiles=None):
    """Each case's top `size` items from the policy's snapshot `rec`; with `profiles`, each
    user's record in the prompt (the Recommender writes it with the bundle's profile template,
    as training did)."""
    reqs = [{"history": list(c.history), "k": size, "beam": beam,
             "profile": profiles.get(c.user_id) if profiles is not None else None}
            for c in cases]
    return rec.recommend_batch(reqs)


def _training_cases(train, users: list, max_history: int, rng: np.random.Generator, n: int):
    """n next-item cases from the training sequences: a random one of `users` (those with 2+
    items), a random position t >= 1 in their sequence; history = the items before t (newest
    max_history)."""
    from ..data import Case

    out = []
    for u in rng.choice(len(users), size=n):
        seq = np.asarray(train[users[u]])
        t = int(rng.integers(1, len(seq)))
        out.append(Case(str(users[u]), tuple(int(i) for i in seq[max(0, t - max_history):t]),
                        int(seq[t])))
    return out


def rl_finetune(sft_ckpt, dataset, out, cfg: RLConfig | None = None, *, device: str = "auto",
                keep: str = "best", log=None) -> dict:
    """Fine-tune the SFT checkpoint ``sft_ckpt`` with GRPO on ``dataset``'s training split (the
    checkpoint's own split); the result is a checkpoint in ``out`` with rl.json, the curve.
    keep="best": the best weights by validation NDCG@10 (the SFT weights when nothing beat
    them), stopping early; keep="last": cfg.steps updates, no validation (a final model whose
    step count was chosen on a tuning model's validation)."""
    if keep not in ("best", "last"):
        raise InvalidArgumentError(f"keep={keep!r}; expected 'best' or 'last'")
    from .._devices import resolve_device
    from ..data.split_spec import make_split
    from ..prompts import PromptSet
    from .checkpoint import load_model, read_run_config
    from ..eval.bundle import evaluate_bundle
    from .evaluate import case_prompts
    from .snapshot import RuntimeSnapshot

    cfg = (cfg or RLConfig()).validate()
    say = log or (lambda msg: None)
    sft_ckpt, out = Path(sft_ckpt), Path(out)
    meta = read_run_config(sft_ckpt)
    train_cfg = meta["train"]
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    policy, tok, views, _ = load_model(sft_ckpt, "best", for_training=True, device=device)
    if len(views) != 1:
        raise InvalidArgumentError(f"{sft_ckpt} is a {len(views)}-view model; RL here takes "
                                   "one-view models")
    ref, _, _, _ = load_model(sft_ckpt, "best", device=device)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    sids = views.primary
    prompts = PromptSet.load(meta["prompts"])
    split = make_split(dataset, train_cfg["split"], None)
    select = keep == "best"
    if select and not split.valid:
        raise InvalidArgumentError(f"the split {train_cfg['split']!r} of {sft_ckpt} has no "
                                   "validation cases; RL stops early on validation NDCG@10")
    rng = np.random.default_rng(cfg.seed)
    valid = [split.valid[int(i)] for i in np.sort(rng.permutation(len(split.valid))[:cfg.eval_cases])]
    profiles = dataset.profiles if train_cfg.get("use_profiles") else None
    common = dict(profiles=profiles, profile_template=train_cfg.get("profile_template"),
                  max_history=int(train_cfg["max_history"]))
    level_tokens = [tok.convert_tokens_to_ids([sids.token(lv, c) for c in range(n)])
                    for lv, n in enumerate(sids.level_sizes)]

    def sid_tokens(item: int) -> list[int]:
        return [level_tokens[lv][c] for lv, c in enumerate(sids.codes_of(item))]

    def validate(model) -> dict:
        # a fresh snapshot: the rollouts that follow search the weights just measured
        m = evaluate_bundle(roll.refresh(model, tok), valid, profiles=profiles, beam=20)
        return {k: m[k] for k in ("HR@10", "NDCG@10")}

    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr,
                            weight_decay=0.0)
    t0 = time.time()
    with RuntimeSnapshot(sft_ckpt, cfg.threads) as roll:
        base = validate(policy) if select else None
        fresh = select  # whether the snapshot holds the policy's weights as they are
        if select:
            say(f"SFT model: validation NDCG@10 {base['NDCG@10']:.4f}, HR@10 {base['HR@10']:.4f}")
        curve = [{"step": 0, **(base or {})}]
        best = {"step": 0, **(base or {})}
        best_state = ({k: v.detach().clone() for k, v in policy.state_dict().items()} if select
                      else None)
        stale, step, stopped = 0, 0, "steps"
        users = [u for u, seq in split.train.items() if len(seq) >= 2]
        # dropout off throughout: the log-probabilities the gradient follows must be the
        # ones the rollouts sampled from and the KL compares with the (eval-mode) SFT model
        policy.eval()
        for step in range(1, cfg.steps + 1):
            if (step - 1) % cfg.snapshot_every == 0 and not fresh:
                roll.refresh(policy, tok)
            cases = _training_cases(split.train, users, common["max_history"], rng,
                                    cfg.cases_per_step)
            groups = _groups(roll.rec, cases, cfg.group, cfg.beam, profiles)
            texts, toks, adv = [], [], []
            prompt_of = case_prompts(cases, sids, prompts, **common)
            for c, g, text in zip(cases, groups, prompt_of):
                items = [r.item_id for r in g]
                a = advantages(rewards(items, c.target, cfg.reward))
                for i, ai in zip(items, a):
                    texts.append(text)
                    toks.append(sid_tokens(i))
                    adv.append(ai)
            adv_t = torch.tensor(adv, dtype=torch.float32, device=dev)
            logp = sid_logprobs(policy, tok, texts, toks, dev)
            with torch.no_grad():
                logp_ref = sid_logprobs(ref, tok, texts, toks, dev)
            d = logp_ref - logp
            kl = (torch.exp(d) - d - 1).mean()
            loss = -(adv_t * logp).mean() + cfg.kl * kl
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
            opt.step()
            fresh = False
            out_of_time = cfg.max_minutes and time.time() - t0 > cfg.max_minutes * 60
            if not select:
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    curve.append({"step": step, "kl": kl.item(), "loss": loss.item(),
                                  "minutes": round((time.time() - t0) / 60, 2)})
            elif step % cfg.eval_every == 0 or step == cfg.steps or out_of_time:
                m = validate(policy)
                fresh = True
                curve.append({"step": step, **m, "kl": kl.item(), "loss": loss.item(),
                              "minutes": round((time.time() - t0) / 60, 2)})
                say(f"step {step}: validation NDCG@10 {m['NDCG@10']:.4f}, HR@10 "
                    f"{m['HR@10']:.4f}, KL {curve[-1]['kl']:.4f}")
                if m["NDCG@10"] > best["NDCG@10"]:
                    best, stale = {"step": step, **m}, 0
                    best_state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        stopped = "patience"
                        break
            if out_of_time:
                stopped = "time"
                break
    if select:
        policy.load_state_dict(best_state)
    else:
        best = {"step": step}
    report = {"config": asdict(cfg), "sft": str(sft_ckpt), "sft_validation": base, "best": best,
              "curve": curve, "steps": step, "stopped_by": stopped,
              "minutes": round((time.time() - t0) / 60, 2)}
    _save_checkpoint(sft_ckpt, out, policy, report)
    return report


def _save_checkpoint(sft_ckpt: Path, out: Path, model, report: dict) -> None:
    """A checkpoint folder like the SFT one (run config, SIDs, tokenizer, items) with the RL
    weights as best/ and last/, written atomically."""
    from .._io import no_hf_progress

    with atomic_directory(out) as tmp:
        for entry in sft_ckpt.iterdir():
            if entry.name in ("best", "last"):
                continue
            (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, tmp / entry.name)
        for which in ("best", "last"):
            with no_hf_progress():
                if hasattr(model, "peft_config"):  # as the trainer saves a LoRA model
                    model.save_pretrained(str(tmp / which / "model"), save_embedding_layers=False)
                else:
                    model.save_pretrained(str(tmp / which / "model"))
            write_json(tmp / which / "info.json", {"rl": report["best"]})
        write_json(tmp / "rl.json", json.loads(json.dumps(report, default=str)))

