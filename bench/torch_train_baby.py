"""PyTorch peer for Bonsai's training benchmark: nanoGPT's CPU "baby" run, with the Llama model.

    /usr/bin/python3 bench/torch_train_baby.py [--data FILE] [--iters 2000] [--threads 1]

Needs Debian's `python3-torch` (/usr/bin/python3) and an optimised BLAS: Debian's torch calls the system
libblas.so.3, which without `libopenblas0-openmp` is the reference BLAS (~5 GFLOP/s, ~1 s/iteration).

Model: scripts/torch_llama.py (HF Llama math), 4 layers, 4 heads, 4 kv heads, dim 128, intermediate 352
(llama2.c rule), block 64, batch 12, dropout 0, nanoGPT init. Char-level data: vocabulary = sorted set of the file's characters, train = first 90%,
val = last 10%. Optimisation as nanoGPT: AdamW betas (0.9, 0.99), weight decay 0.1 on params with
dim >= 2 only, grad clip 1.0, lr 1e-3 with linear warmup 100 then cosine to 1e-4 at iters; estimate_loss
(20 random batches per split) every 250 iters and at the end. Seed 1337.

Progress goes to stderr; at the end one JSON line goes to stdout:
  {"wall_s", "ms_per_iter", "tokens_per_s", "final_val_loss", "full_val_loss", "evals": [{iter, train, val}],
   "params", ...}
ms_per_iter and tokens_per_s time the training steps only (evals excluded); wall_s is everything after
data loading, evals and the full-val pass included. full_val_loss: mean CE per token over the whole val
split in non-overlapping windows of block size.
"""

import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "scripts"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "corpora", "tinyshakespeare.txt"))
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--eval-interval", type=int, default=250)
    ap.add_argument("--eval-iters", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()

    # Debian's torch calls the system libblas.so.3 (install libopenblas0-openmp, else it is the ~5 GFLOP/s
    # reference BLAS); pin BLAS threads too, before torch loads it.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(args.threads))
    import torch
    from torch_llama import LlamaConfig, LlamaForCausalLM, default_intermediate_size

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    # ---- data: char-level, 90/10 split ----
    with open(args.data, "r", encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    stoi = {ch: i for i, ch in enumerate(chars)}
    data = torch.tensor([stoi[ch] for ch in text], dtype=torch.long)
    n = int(0.9 * len(data))
    train_data, val_data = data[:n], data[n:]
    log(f"data: {args.data}: {len(data)} chars, vocab {len(chars)}, train {len(train_data)}, val {len(val_data)}")

    B, T = args.batch, args.block

    def get_batch(split: str):
        d = train_data if split == "train" else val_data
        ix = torch.randint(len(d) - T, (B,))
        x = torch.stack([d[i:i + T] for i in ix])
        y = torch.stack([d[i + 1:i + 1 + T] for i in ix])
        return x, y

    # ---- model ----
    cfg = LlamaConfig(vocab_size=len(chars), hidden_size=args.dim, intermediate_size=default_intermediate_size(args.dim),
                      num_hidden_layers=args.layers, num_attention_heads=args.heads, num_key_value_heads=args.kv_heads,
                      max_position_embeddings=T, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                      dropout=0.0)
    model = LlamaForCausalLM(cfg)
    n_params = model.num_params()
    log(f"model: {cfg.to_dict()}; {n_params} parameters ({n_params / 1e6:.2f}M)")

    # nanoGPT: decay params with dim >= 2 (matrices, embeddings), not norms
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.99))

    def get_lr(it: int) -> float:  # nanoGPT's
        if it < args.warmup:
            return args.lr * (it + 1) / (args.warmup + 1)
        if it > args.iters:
            return args.min_lr
        ratio = (it - args.warmup) / max(1, args.iters - args.warmup)
        coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))
        return args.min_lr + coeff * (args.lr - args.min_lr)

    @torch.no_grad()
    def estimate_loss() -> dict:
        out = {}
        model.eval()
        for split in ("train", "val"):
            losses = torch.zeros(args.eval_iters)
            for k in range(args.eval_iters):
                x, y = get_batch(split)
                losses[k] = model(x, y)[1].item()
            out[split] = losses.mean().item()
        model.train()
        return out

    @torch.no_grad()
    def full_val_loss(windows_per_batch: int = 64) -> float:
        model.eval()
        n_win = (len(val_data) - 1) // T
        total, count = 0.0, 0
        for w0 in range(0, n_win, windows_per_batch):
            ws = range(w0, min(n_win, w0 + windows_per_batch))
            x = torch.stack([val_data[w * T:w * T + T] for w in ws])
            y = torch.stack([val_data[w * T + 1:w * T + T + 1] for w in ws])
            total += model(x, y)[1].item() * y.numel()
            count += y.numel()
        model.train()
        return total / count

    # ---- train ----
    evals = []
    train_s = 0.0
    t_start = time.perf_counter()
    model.train()
    for it in range(args.iters + 1):
        if it % args.eval_interval == 0 or it == args.iters:
            l = estimate_loss()
            evals.append({"iter": it, "train": l["train"], "val": l["val"], "elapsed_s": time.perf_counter() - t_start})
            done = max(it, 1)
            log(f"step {it}: train loss {l['train']:.4f}, val loss {l['val']:.4f}"
                f" ({1000 * train_s / done:.1f} ms/iter so far)")
        if it == args.iters:
            break
        t0 = time.perf_counter()
        lr = get_lr(it)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = get_batch("train")
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        train_s += time.perf_counter() - t0
        if it % 100 == 0:
            log(f"iter {it}: loss {loss.item():.4f}, lr {lr:.2e}, {1000 * train_s / (it + 1):.1f} ms/iter")

    t_fv = time.perf_counter()
    fvl = full_val_loss()
    log(f"full val loss {fvl:.4f} over {(len(val_data) - 1) // T} windows ({time.perf_counter() - t_fv:.1f} s)")
    wall = time.perf_counter() - t_start
    ms = 1000 * train_s / max(1, args.iters)
    print(json.dumps({
        "wall_s": round(wall, 3),
        "ms_per_iter": round(ms, 3),
        "tokens_per_s": round(B * T / (ms / 1000), 1) if ms > 0 else None,
        "final_val_loss": evals[-1]["val"],
        "full_val_loss": fvl,
        "evals": evals,
        "params": n_params,
        "iters": args.iters,
        "threads": args.threads,
        "torch": torch.__version__,
        "config": cfg.to_dict(),
    }), flush=True)


if __name__ == "__main__":
    main()
