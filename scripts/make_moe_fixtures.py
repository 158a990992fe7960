"""Write test/fixtures/mixtral.json: a PyTorch Mixtral reference (scripts/torch_mixtral.py) in float64.

    /usr/bin/python3 scripts/make_moe_fixtures.py [--out DIR]

Needs Debian's python3-torch; deterministic (seeded, float64, CPU). The fixture: vocab 13, hidden 16,
2 layers, 4 heads / 2 kv heads, 4 experts of intermediate 12, 2 per token, untied head, aux coef 0.1 and
z coef 0.05 (large, so their gradients show). Fields: config (HF names), batch, seq, ids, targets,
logits, ce, aux, z, loss (ce + coefs), params and grads of `loss` ({name: {shape, data}}, HF's
per-expert names). Weights are float32-representable (drawn in float32, then widened). Before
writing, the MoE block is checked against a token-by-token loop and a few gradients by finite
differences; the routing margins (the gap between the k-th and (k+1)-th probability) are printed, so
that a float32 run of the same weights is known to pick the same experts.
"""

import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_mixtral import MixtralConfig, MixtralForCausalLM, parameter_names  # noqa: E402
from make_fixtures import flat, write_json  # noqa: E402
import make_fixtures  # noqa: E402

BATCH, SEQ = 2, 5


def loop_moe(block, x: torch.Tensor) -> torch.Tensor:
    """Token by token, expert by expert: shares no code with the block's gather/scatter."""
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        p = torch.softmax(block.gate.weight @ x[t], 0)
        order = sorted(range(block.num_experts), key=lambda e: (-p[e].item(), e))[: block.top_k]
        s = sum(p[e] for e in order)
        for e in order:
            ex = block.experts[e]
            out[t] += (p[e] / s) * (ex.w2.weight @ (F.silu(ex.w1.weight @ x[t]) * (ex.w3.weight @ x[t])))
    return out


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--out":
        make_fixtures.OUT_DIR = os.path.abspath(sys.argv[2])
    torch.set_num_threads(1)
    os.makedirs(make_fixtures.OUT_DIR, exist_ok=True)
    c = MixtralConfig(vocab_size=13, hidden_size=16, intermediate_size=12, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=16, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, dropout=0.0, num_local_experts=4, num_experts_per_tok=2,
                      router_aux_loss_coef=0.1, router_z_loss_coef=0.05)
    g = torch.Generator().manual_seed(5)
    model = MixtralForCausalLM(c)
    params = dict(model.named_parameters())
    names = parameter_names(c)
    assert sorted(names) == sorted(params), sorted(set(names) ^ set(params))
    with torch.no_grad():
        for name in names:
            p = params[name]
            std = 0.4 if name == "model.embed_tokens.weight" else 0.2 if name == "lm_head.weight" else 1.0 if name.endswith("gate.weight") else 0.3
            w = (1.0 + 0.2 * torch.randn(p.shape, generator=g, dtype=torch.float32)) if name.endswith("norm.weight") else std * torch.randn(p.shape, generator=g, dtype=torch.float32)
            p.copy_(w)
    model = model.double()
    ids = torch.randint(0, c.vocab_size, (BATCH, SEQ), generator=g)
    targets = torch.randint(0, c.vocab_size, (BATCH, SEQ), generator=g)
    logits, ce, aux, z, loss = model(ids, targets)
    loss.backward()

    # The block against the loop, on the first layer's real input; and the routing margins.
    with torch.no_grad():
        layer = model.model.layers[0]
        h = model.model.embed_tokens(ids)
        h = h + layer.self_attn(layer.input_layernorm(h))
        x = layer.post_attention_layernorm(h).reshape(-1, c.hidden_size)
        block_out, router_logits = layer.block_sparse_moe(x.reshape(BATCH, SEQ, -1))
        err = (block_out.reshape(-1, c.hidden_size) - loop_moe(layer.block_sparse_moe, x)).abs().max().item()
        assert err < 1e-12, f"MoE block and loop disagree by {err}"
        margins = []
        for l_logits in [router_logits]:
            p = torch.softmax(l_logits, -1).sort(-1, descending=True).values
            margins.append((p[:, c.num_experts_per_tok - 1] - p[:, c.num_experts_per_tok]).min().item())
    # Finite differences on a few entries, router and experts included.
    with torch.no_grad():
        for name in ("model.layers.0.block_sparse_moe.gate.weight", "model.layers.1.block_sparse_moe.experts.2.w1.weight", "model.embed_tokens.weight"):
            p = params[name]
            i = p.numel() // 3
            old = p.view(-1)[i].item()
            eps = 1e-6
            p.view(-1)[i] = old + eps
            lp = model(ids, targets)[4].item()
            p.view(-1)[i] = old - eps
            lm = model(ids, targets)[4].item()
            p.view(-1)[i] = old
            fd, an = (lp - lm) / (2 * eps), p.grad.view(-1)[i].item()
            assert abs(fd - an) < 1e-7 * max(1.0, abs(an)) + 1e-9, f"grad check {name}: fd {fd} vs {an}"

    write_json("mixtral.json", {
        "description": "Mixtral (HF MixtralForCausalLM math): 4 experts, top-2, GQA 4/2 heads; loss = CE + 0.1 aux + 0.05 z",
        "generator": "scripts/make_moe_fixtures.py (PyTorch, float64)",
        "config": {"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", **c.to_dict()},
        "batch": BATCH,
        "seq": SEQ,
        "ids": ids.reshape(-1).tolist(),
        "targets": targets.reshape(-1).tolist(),
        "logits": flat(logits),
        "ce": ce.item(),
        "aux": aux.item(),
        "z": z.item(),
        "loss": loss.item(),
        "params": {n: {"shape": list(params[n].shape), "data": flat(params[n])} for n in names},
        "grads": {n: {"shape": list(params[n].shape), "data": flat(params[n].grad)} for n in names},
    })
    print(f"  mixtral.json: ce {ce.item():.6f} aux {aux.item():.6f} z {z.item():.6f}; block-vs-loop {err:.1e}; "
          f"smallest top-k routing margin (layer 0) {min(margins):.2e}", file=sys.stderr)


if __name__ == "__main__":
    main()
