"""Write the PyTorch reference fixtures in test/fixtures/ (committed; the TypeScript tests read them).

Regenerate with:

    /usr/bin/python3 scripts/make_fixtures.py

It needs Debian's `python3-torch` (`apt-get install -y python3-torch`; use /usr/bin/python3, the
interpreter that package installs into). No network, no `transformers`. The output is deterministic:
every fixture is seeded, computed in float64 on the CPU, and written in a fixed key order. (The last
bits of float64 results depend on the BLAS behind Debian's torch -- the reference libblas3 or OpenBLAS --
at the ~1e-13 level, far below any float32 tolerance; the committed files were written with
libopenblas0-openmp.)
`--out DIR` writes elsewhere (to compare runs).

Fixtures:
  llama_gqa.json  vocab 13, hidden 16, 2 layers, 4 heads, 2 kv heads, intermediate 24, untied lm_head
  llama_mqa.json  vocab 11, hidden 16, 2 layers, 4 heads, 1 kv head, intermediate 24, tied embeddings
  llama_mha.json  vocab 17, hidden 12, 3 layers, 2 heads, 2 kv heads, intermediate 20, untied lm_head
    fields: description, config (HF names), batch, seq, ids and targets (flat, row-major [B, T]),
    loss (mean CE over the B*T positions), logits (flat [B*T, V]), params and grads
    ({name: {shape, data}} for every parameter, in parameterNames() order; data flat row-major).
    Random weights (so gradients are not tiny): embeddings N(0, 0.4), lm_head N(0, 0.2), projections
    N(0, 0.3), norms 1 + N(0, 0.2). Values are float32-representable (drawn in float32, then widened), so
    loading them into a Float32Array is exact; all computation is float64. Before writing, the script
    checks the module against an independent loop implementation and a few gradients by finite
    differences.
  adamw.json      torch.optim.AdamW (lr 1e-3, betas (0.9, 0.99), eps 1e-8) with two param groups
    (a matrix with weight_decay 0.1, a vector with weight_decay 0 -- nanoGPT's "dim >= 2 decays"),
    each step: raw grads -> torch.nn.utils.clip_grad_norm_(max_norm 1.0) -> optimizer.step().
    Records the initial params, and per step the raw grads, the total norm clip_grad_norm_ returned
    (before clipping), the clipped grads and the params after the step. Some steps clip, some don't.
    Note torch's clip: coef = max_norm / (total_norm + 1e-6), applied only when coef < 1.
"""

import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_llama import LlamaConfig, LlamaForCausalLM, parameter_names  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "test", "fixtures")
BATCH, SEQ = 2, 5


def flat(t: torch.Tensor) -> list:
    vals = t.detach().to(torch.float64).reshape(-1).tolist()
    for v in vals:
        assert math.isfinite(v), "non-finite value in fixture"
    return vals


def write_json(name: str, obj: dict) -> None:
    """One top-level key per line, compact values: deterministic and diff-friendly enough."""
    path = os.path.join(OUT_DIR, name)
    lines = [json.dumps(k) + ":" + json.dumps(v, separators=(",", ":"), allow_nan=False) for k, v in obj.items()]
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)", file=sys.stderr)


# ---- an independent, loop-based implementation of the same math, to cross-check the module ----

def reference_logits(c: LlamaConfig, P: dict, ids: torch.Tensor) -> torch.Tensor:
    """Position-by-position, head-by-head; shares no code with torch_llama's forward."""
    B, T = ids.shape
    hd, H, KV, D = c.head_dim, c.num_attention_heads, c.num_key_value_heads, c.hidden_size

    def rms(x, w):
        return w * (x / torch.sqrt((x * x).mean() + c.rms_norm_eps))

    def rope(vec, pos):
        out = vec.clone()
        for i in range(hd // 2):
            ang = pos / (c.rope_theta ** (2 * i / hd))
            a, b = vec[i], vec[i + hd // 2]
            out[i] = a * math.cos(ang) - b * math.sin(ang)
            out[i + hd // 2] = b * math.cos(ang) + a * math.sin(ang)
        return out

    lm_head = P["model.embed_tokens.weight"] if c.tie_word_embeddings else P["lm_head.weight"]
    logits = torch.zeros(B, T, c.vocab_size, dtype=torch.float64)
    for b in range(B):
        h = [P["model.embed_tokens.weight"][ids[b, t]].clone() for t in range(T)]
        for l in range(c.num_hidden_layers):
            p = f"model.layers.{l}."
            xs = [rms(h[t], P[p + "input_layernorm.weight"]) for t in range(T)]
            qs = [P[p + "self_attn.q_proj.weight"] @ x for x in xs]
            ks = [P[p + "self_attn.k_proj.weight"] @ x for x in xs]
            vs = [P[p + "self_attn.v_proj.weight"] @ x for x in xs]
            new_h = []
            for t in range(T):
                y = torch.zeros(D, dtype=torch.float64)
                for head in range(H):
                    g = head // (H // KV)
                    q = rope(qs[t][head * hd:(head + 1) * hd], t)
                    sc = torch.stack([rope(ks[s][g * hd:(g + 1) * hd], s) @ q / math.sqrt(hd) for s in range(t + 1)])
                    w = torch.softmax(sc, 0)
                    y[head * hd:(head + 1) * hd] = sum(w[s] * vs[s][g * hd:(g + 1) * hd] for s in range(t + 1))
                hh = h[t] + P[p + "self_attn.o_proj.weight"] @ y
                x2 = rms(hh, P[p + "post_attention_layernorm.weight"])
                gate = P[p + "mlp.gate_proj.weight"] @ x2
                up = P[p + "mlp.up_proj.weight"] @ x2
                new_h.append(hh + P[p + "mlp.down_proj.weight"] @ (gate * torch.sigmoid(gate) * up))
            h = new_h
        for t in range(T):
            logits[b, t] = lm_head @ rms(h[t], P["model.norm.weight"])
    return logits


# ---- model fixtures ----

def model_fixture(fname: str, description: str, c: LlamaConfig, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    model = LlamaForCausalLM(c, init=False)
    params = dict(model.named_parameters())
    names = parameter_names(c)
    assert sorted(names) == sorted(params), (names, list(params))
    with torch.no_grad():
        for name in names:
            p = params[name]
            if name.endswith("norm.weight"):
                w = 1.0 + 0.2 * torch.randn(p.shape, generator=g, dtype=torch.float32)
            elif name == "model.embed_tokens.weight":
                w = 0.4 * torch.randn(p.shape, generator=g, dtype=torch.float32)
            elif name == "lm_head.weight":
                w = 0.2 * torch.randn(p.shape, generator=g, dtype=torch.float32)
            else:
                w = 0.3 * torch.randn(p.shape, generator=g, dtype=torch.float32)
            p.copy_(w)  # float32 values, exact once widened
    model = model.double()
    ids = torch.randint(0, c.vocab_size, (BATCH, SEQ), generator=g)
    targets = torch.randint(0, c.vocab_size, (BATCH, SEQ), generator=g)

    model.train()  # dropout is 0, so train mode changes nothing
    logits, loss = model(ids, targets)
    loss.backward()

    P = {n: params[n].detach() for n in names}
    ref = reference_logits(c, P, ids)
    err = (ref - logits.detach()).abs().max().item()
    assert err < 1e-12, f"{fname}: module and loop reference disagree by {err}"
    # finite-difference check of a few gradient entries
    with torch.no_grad():
        for name in (names[0], names[2], names[-1]):
            p = params[name]
            i = p.numel() // 3
            old = p.view(-1)[i].item()
            eps = 1e-6
            p.view(-1)[i] = old + eps
            lp = model(ids, targets)[1].item()
            p.view(-1)[i] = old - eps
            lm = model(ids, targets)[1].item()
            p.view(-1)[i] = old
            fd = (lp - lm) / (2 * eps)
            an = p.grad.view(-1)[i].item()
            assert abs(fd - an) < 1e-7 * max(1.0, abs(an)) + 1e-9, f"{fname}: grad check {name}: fd {fd} vs {an}"

    write_json(fname, {
        "description": description,
        "generator": "scripts/make_fixtures.py (PyTorch, float64)",
        "config": c.to_dict(),
        "batch": BATCH,
        "seq": SEQ,
        "ids": ids.reshape(-1).tolist(),
        "targets": targets.reshape(-1).tolist(),
        "loss": loss.item(),
        "logits": flat(logits),
        "params": {n: {"shape": list(params[n].shape), "data": flat(params[n])} for n in names},
        "grads": {n: {"shape": list(params[n].shape), "data": flat(params[n].grad)} for n in names},
    })
    print(f"  {fname}: loss {loss.item():.6f} (ln V = {math.log(c.vocab_size):.6f}), loop-reference max err {err:.1e}",
          file=sys.stderr)


def adamw_fixture() -> None:
    g = torch.Generator().manual_seed(4242)
    hyper = {"lr": 1e-3, "betas": [0.9, 0.99], "eps": 1e-8, "max_norm": 1.0}
    specs = [("w", [3, 4], 0.1), ("b", [4], 0.0)]
    tensors = {n: torch.nn.Parameter((0.5 * torch.randn(s, generator=g, dtype=torch.float32)).double())
               for n, s, _ in specs}
    initial = {n: flat(tensors[n]) for n, _, _ in specs}
    opt = torch.optim.AdamW(
        [{"params": [tensors[n]], "weight_decay": wd} for n, _, wd in specs],
        lr=hyper["lr"], betas=tuple(hyper["betas"]), eps=hyper["eps"])
    # per-step grad scale: total norms well above and below max_norm
    scales = [2.0, 0.05, 0.3, 5.0, 0.1, 1.5]
    steps = []
    for k, scale in enumerate(scales):
        raw = {n: (scale * torch.randn(s, generator=g, dtype=torch.float32)).double() for n, s, _ in specs}
        for n, _, _ in specs:
            tensors[n].grad = raw[n].clone()
        total = torch.nn.utils.clip_grad_norm_([tensors[n] for n, _, _ in specs], max_norm=hyper["max_norm"])
        clipped = {n: flat(tensors[n].grad) for n, _, _ in specs}
        opt.step()
        steps.append({
            "step": k + 1,
            "lr": hyper["lr"],
            "grads": {n: flat(raw[n]) for n, _, _ in specs},
            "total_norm": total.item(),
            "clipped": total.item() > hyper["max_norm"],
            "clipped_grads": clipped,
            "params_after": {n: flat(tensors[n]) for n, _, _ in specs},
        })
    write_json("adamw.json", {
        "description": "torch.optim.AdamW with two param groups; each step: clip_grad_norm_(all params, max_norm) "
                       "then step(). torch clip coef = max_norm / (total_norm + 1e-6), applied when < 1. "
                       "AdamW: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; "
                       "p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps).",
        "generator": "scripts/make_fixtures.py (PyTorch, float64)",
        "hyper": hyper,
        "params": [{"name": n, "shape": s, "weight_decay": wd, "initial": initial[n]} for n, s, wd in specs],
        "steps": steps,
    })


def main() -> None:
    global OUT_DIR
    if len(sys.argv) == 3 and sys.argv[1] == "--out":  # for comparing runs; the default is test/fixtures
        OUT_DIR = os.path.abspath(sys.argv[2])
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    common = dict(max_position_embeddings=16, rms_norm_eps=1e-5, rope_theta=10000.0, dropout=0.0)
    model_fixture("llama_gqa.json", "GQA: 4 query heads share 2 kv heads; untied lm_head",
                  LlamaConfig(vocab_size=13, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False, **common), 1)
    model_fixture("llama_mqa.json", "MQA: 4 query heads share 1 kv head; tied embeddings (no lm_head.weight)",
                  LlamaConfig(vocab_size=11, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=True, **common), 2)
    model_fixture("llama_mha.json", "MHA: kv heads = heads = 2 (head_dim 6); 3 layers; untied lm_head",
                  LlamaConfig(vocab_size=17, hidden_size=12, intermediate_size=20, num_hidden_layers=3,
                              num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False, **common), 3)
    adamw_fixture()


if __name__ == "__main__":
    main()
