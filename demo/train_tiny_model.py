"""Train a tiny real Chinese-CLIP model (cn_clip's CLIP class) on synthetic shapes and save it.

Usage: python -m demo.train_tiny_model --out demo/tiny_clip.pt --steps 1500 --seed 0
       python -m demo.train_tiny_model --out demo/tiny_clip.pt --eval-only   # re-check a saved checkpoint
Load with: model = CLIP(**ckpt["model_config"]); model.load_state_dict({k: v.float() ...}); model.float().eval()
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from cn_clip.clip import image_transform, tokenize
from cn_clip.clip.model import CLIP

if not __package__:  # allow running as `python demo/<script>.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from demo.shapes import CLASSES, caption, caption_variants, draw  # noqa: E402

MODEL_CONFIG: dict = dict(
    embed_dim=64,
    image_resolution=64,
    vision_layers=2,
    vision_width=64,
    vision_patch_size=8,
    vision_head_width=32,
    vocab_size=21128,
    text_attention_probs_dropout_prob=0.0,
    text_hidden_act="gelu",
    text_hidden_dropout_prob=0.0,
    text_hidden_size=64,
    text_initializer_range=0.02,
    text_intermediate_size=128,
    text_max_position_embeddings=64,
    text_num_attention_heads=2,
    text_num_hidden_layers=2,
    text_type_vocab_size=2,
)
CONTEXT_LENGTH = 52


def random_size(rng: random.Random) -> tuple[int, int]:
    """Random training size: each side 40..224 px independently (deliberately includes odd aspect ratios)."""
    return rng.randint(40, 224), rng.randint(40, 224)


def photo_size(rng: random.Random) -> tuple[int, int]:
    """Random photo-like evaluation size: short side 48..224 px, aspect ratio up to 2:1, either orientation."""
    short = rng.randint(48, 224)
    long = round(short * rng.uniform(1.0, 2.0))
    return (long, short) if rng.random() < 0.5 else (short, long)


def make_batch(rng: random.Random, n: int, transform) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw n random images with a random caption variant each; return (images, tokens, class labels)."""
    labels = [rng.randrange(len(CLASSES)) for _ in range(n)]
    images = torch.stack([transform(draw(*CLASSES[y], rng, random_size(rng))) for y in labels])
    texts = [rng.choice(caption_variants(*CLASSES[y])) for y in labels]
    return images, tokenize(texts, context_length=CONTEXT_LENGTH), torch.tensor(labels)


def clip_loss(model: CLIP, images: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with soft multi-positive targets for captions of the same class."""
    img = F.normalize(model.encode_image(images), dim=-1)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    logits = model.logit_scale.exp() * img @ txt.t()
    same = (labels[:, None] == labels[None, :]).float()
    targets = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


@torch.no_grad()
def precision_at_10(model: CLIP, seed: int, per_class: int = 10) -> dict[str, float]:
    """Rank freshly drawn images (per_class of each class) for every canonical caption; precision@10 per caption."""
    rng = random.Random(seed)
    transform = image_transform(MODEL_CONFIG["image_resolution"])
    labels = [y for y in range(len(CLASSES)) for _ in range(per_class)]
    images = torch.stack([transform(draw(*CLASSES[y], rng, photo_size(rng))) for y in labels])
    img = F.normalize(model.encode_image(images), dim=-1)
    tokens = tokenize([caption(*c) for c in CLASSES], context_length=CONTEXT_LENGTH)
    txt = F.normalize(model.encode_text(tokens), dim=-1)
    top = (txt @ img.t()).topk(10, dim=1).indices
    lab = torch.tensor(labels)
    return {caption(*c): (lab[top[k]] == k).float().mean().item() for k, c in enumerate(CLASSES)}


def load_fp16_roundtrip(state_dict: dict, config: dict = MODEL_CONFIG) -> CLIP:
    """Build a fresh model from fp16-rounded weights, as a loader of the saved file would."""
    model = CLIP(**config)
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in state_dict.items()})
    return model.float().eval()


def report(name: str, model: CLIP, seed: int) -> None:
    """Print precision@10 per canonical caption and the mean."""
    prec = precision_at_10(model, seed=seed)
    print(f"[{name}] precision@10: " + "  ".join(f"{k} {v:.1f}" for k, v in prec.items()))
    print(f"[{name}] mean precision@10: {sum(prec.values()) / len(prec):.4f}")


def main() -> None:
    """Train, evaluate and save the tiny model."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo/tiny_clip.pt")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-only", action="store_true", help="only evaluate the checkpoint at --out")
    a = p.parse_args()

    torch.set_num_threads(2)
    if a.eval_only:
        ckpt = torch.load(a.out, map_location="cpu", weights_only=False)
        report("saved weights", load_fp16_roundtrip(ckpt["state_dict"], ckpt["model_config"]), a.seed + 12345)
        return
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    model = CLIP(**MODEL_CONFIG).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps, pct_start=0.1)
    transform = image_transform(MODEL_CONFIG["image_resolution"])
    t0 = time.time()
    for step in range(1, a.steps + 1):
        loss = clip_loss(model, *make_batch(rng, a.batch_size, transform))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, 4.6052)
        if step % 50 == 0 or step == 1:
            scale = model.logit_scale.exp().item()
            print(f"step {step:5d}  loss {loss.item():.4f}  scale {scale:.1f}  {time.time() - t0:.0f}s", flush=True)
    print(f"training time: {time.time() - t0:.1f}s")

    model.eval()
    report("fp32", model, a.seed + 12345)
    report("fp16 weights", load_fp16_roundtrip(model.state_dict()), a.seed + 12345)

    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "model_config": dict(MODEL_CONFIG)}, a.out)
    print(f"saved {a.out} ({Path(a.out).stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
