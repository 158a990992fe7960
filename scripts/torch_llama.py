"""A small, readable PyTorch reference of Bonsai's model: Hugging Face's LlamaForCausalLM math.

No `transformers` dependency; parameter names and shapes are HF's ([out, in] for projections), so
`named_parameters()` lists exactly the names of src/nn/config.ts `parameterNames()` (with tied
embeddings `lm_head.weight` is the same tensor as `model.embed_tokens.weight` and is listed once).

  h = dropout(embed_tokens[ids])
  per layer:  h = h + dropout(o_proj(attention(rope(q), rope(k), v)))   (input_layernorm first)
              h = h + dropout(down_proj(silu(gate_proj(x)) * up_proj(x)))  (x = post_attention_layernorm(h))
  logits = norm(h) @ lm_head.T;  loss = mean cross-entropy over all B*T positions

Used by scripts/make_fixtures.py (float64 fixtures for the TypeScript tests) and by
bench/torch_train_baby.py (the PyTorch training peer). Needs Debian's `python3-torch`
(run with /usr/bin/python3). Works in float32 or float64 (`model.double()`).
"""

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaConfig:
    """HF LlamaConfig field names (plus Bonsai's `dropout`)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False
    dropout: float = 0.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def to_dict(self) -> dict:
        return asdict(self)


def default_intermediate_size(hidden_size: int, multiple_of: int = 32) -> int:
    """llama2.c's SwiGLU width: 2/3 of 4*dim, rounded up to a multiple of `multiple_of`."""
    h = (2 * 4 * hidden_size) // 3
    return multiple_of * ((h + multiple_of - 1) // multiple_of)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Norms and softmax run in at least float32 (float64 stays float64)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.to(_compute_dtype(x.dtype))
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """HF's rotation: pairs (i, i + d/2), [x1, x2] -> [-x2, x1]."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


_rope_cache: dict = {}


def rope_cos_sin(seq_len: int, head_dim: int, theta: float, dtype: torch.dtype, device) -> tuple:
    """cos/sin of pos * inv_freq, [T, head_dim] (each half repeated); computed in float64."""
    key = (seq_len, head_dim, theta, dtype, str(device))
    if key not in _rope_cache:
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        pos = torch.arange(seq_len, dtype=torch.float64)
        angle = torch.outer(pos, inv_freq)  # [T, hd/2]
        emb = torch.cat((angle, angle), dim=-1)  # [T, hd]
        _rope_cache[key] = (emb.cos().to(dtype=dtype, device=device), emb.sin().to(dtype=dtype, device=device))
    return _rope_cache[key]


class LlamaAttention(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.hd, self.theta = c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.rope_theta
        self.q_proj = nn.Linear(c.hidden_size, self.n_heads * self.hd, bias=False)
        self.k_proj = nn.Linear(c.hidden_size, self.n_kv * self.hd, bias=False)
        self.v_proj = nn.Linear(c.hidden_size, self.n_kv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.hd, c.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        # [B, T, heads, hd] -> [B, heads, T, hd]
        q = self.q_proj(x).view(B, T, self.n_heads, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        cos, sin = rope_cos_sin(T, self.hd, self.theta, x.dtype, x.device)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # GQA: query head h reads kv head h // (heads / kv_heads) (HF repeat_kv)
        rep = self.n_heads // self.n_kv
        if rep > 1:
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.hd))  # [B, H, T, T]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1)
        scores = scores.masked_fill(causal, float("-inf"))
        p = torch.softmax(scores.to(_compute_dtype(scores.dtype)), dim=-1).to(q.dtype)
        y = (p @ v).transpose(1, 2).reshape(B, T, self.n_heads * self.hd)
        return self.o_proj(y)


class LlamaMLP(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.up_proj = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.down_proj = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = LlamaAttention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = LlamaMLP(c)
        self.dropout = c.dropout

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a = self.self_attn(self.input_layernorm(h))
        h = h + F.dropout(a, p=self.dropout, training=self.training)
        m = self.mlp(self.post_attention_layernorm(h))
        return h + F.dropout(m, p=self.dropout, training=self.training)


class LlamaModel(nn.Module):
    def __init__(self, c: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.dropout = c.dropout

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = F.dropout(self.embed_tokens(ids), p=self.dropout, training=self.training)
        for layer in self.layers:
            h = layer(h)
        return self.norm(h)


class LlamaForCausalLM(nn.Module):
    def __init__(self, c: LlamaConfig, init: bool = True):
        super().__init__()
        self.config = c
        self.model = LlamaModel(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        if init:
            init_nanogpt_(self)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor = None):
        """ids, targets: [B, T] int64. Returns (logits [B, T, V], loss or None)."""
        logits = self.lm_head(self.model(ids))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def parameter_names(c: LlamaConfig) -> list:
    """Same order as src/nn/config.ts parameterNames()."""
    names = ["model.embed_tokens.weight"]
    for l in range(c.num_hidden_layers):
        p = f"model.layers.{l}."
        names += [p + s for s in ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                  "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                                  "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")]
    names.append("model.norm.weight")
    if not c.tie_word_embeddings:
        names.append("lm_head.weight")
    return names


@torch.no_grad()
def init_nanogpt_(model: LlamaForCausalLM, generator: torch.Generator = None) -> None:
    """nanoGPT's init: Linear/Embedding N(0, 0.02); o_proj, down_proj N(0, 0.02/sqrt(2*n_layers)); norms 1."""
    c = model.config
    params = dict(model.named_parameters())
    for name in parameter_names(c):
        p = params[name]
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        elif name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
            p.normal_(0.0, 0.02 / math.sqrt(2 * c.num_hidden_layers), generator=generator)
        else:
            p.normal_(0.0, 0.02, generator=generator)
