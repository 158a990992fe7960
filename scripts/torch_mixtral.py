"""A small PyTorch reference of Bonsai's MoE model: Hugging Face's MixtralForCausalLM math.

Written from transformers' modeling_mixtral.py (MixtralSparseMoeBlock, MixtralBlockSparseTop2MLP,
load_balancing_loss_func), with torch_llama.py's attention and norms (Mixtral is Llama with a
sparse FFN; sliding-window attention is off). No `transformers` dependency; parameter names are
HF's Mixtral names, experts one module each (`block_sparse_moe.experts.M.w1.weight`).

  per layer:  x = post_attention_layernorm(h)
              p = softmax(gate(x));  w, e = topk(p, k);  w /= w.sum()
              h = h + sum_j w_j * w2_e_j(silu(w1_e_j(x)) * w3_e_j(x))
  loss = CE + router_aux_loss_coef * aux + router_z_loss_coef * z
  aux  = E * sum_i f_i * P_i over all layers' router rows together (HF's load_balancing_loss_func)
  z    = mean over those rows of logsumexp(router logits)^2 (ST-MoE's router z-loss; Bonsai's)

Used by scripts/make_moe_fixtures.py. Run with /usr/bin/python3 (Debian's python3-torch).
"""

from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch_llama import LlamaAttention, LlamaConfig, RMSNorm


@dataclass
class MixtralConfig(LlamaConfig):
    num_local_experts: int = 4
    num_experts_per_tok: int = 2
    router_aux_loss_coef: float = 0.001
    router_z_loss_coef: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class MixtralBlockSparseTop2MLP(nn.Module):
    def __init__(self, c: MixtralConfig):
        super().__init__()
        self.w1 = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)
        self.w2 = nn.Linear(c.intermediate_size, c.hidden_size, bias=False)
        self.w3 = nn.Linear(c.hidden_size, c.intermediate_size, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(h)) * self.w3(h))


class MixtralSparseMoeBlock(nn.Module):
    """HF's block, as written there: per expert, gather its tokens, run it, scatter-add back."""

    def __init__(self, c: MixtralConfig):
        super().__init__()
        self.num_experts, self.top_k = c.num_local_experts, c.num_experts_per_tok
        self.gate = nn.Linear(c.hidden_size, self.num_experts, bias=False)
        self.experts = nn.ModuleList([MixtralBlockSparseTop2MLP(c) for _ in range(self.num_experts)])

    def forward(self, hidden_states: torch.Tensor):
        B, T, D = hidden_states.shape
        hidden_states = hidden_states.view(-1, D)
        router_logits = self.gate(hidden_states)
        routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float64 if hidden_states.dtype == torch.float64 else torch.float)
        routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
        routing_weights = routing_weights / routing_weights.sum(dim=-1, keepdim=True)
        routing_weights = routing_weights.to(hidden_states.dtype)
        final = torch.zeros((B * T, D), dtype=hidden_states.dtype)
        expert_mask = F.one_hot(selected_experts, num_classes=self.num_experts).permute(2, 1, 0)
        for e in range(self.num_experts):
            idx, top_x = torch.where(expert_mask[e])
            current = hidden_states[None, top_x].reshape(-1, D)
            out = self.experts[e](current) * routing_weights[top_x, idx, None]
            final = final.index_add(0, top_x, out.to(hidden_states.dtype))
        return final.reshape(B, T, D), router_logits


class MixtralDecoderLayer(nn.Module):
    def __init__(self, c: MixtralConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = LlamaAttention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.block_sparse_moe = MixtralSparseMoeBlock(c)

    def forward(self, h: torch.Tensor):
        h = h + self.self_attn(self.input_layernorm(h))
        m, router_logits = self.block_sparse_moe(self.post_attention_layernorm(h))
        return h + m, router_logits


class MixtralModel(nn.Module):
    def __init__(self, c: MixtralConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([MixtralDecoderLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, ids: torch.Tensor):
        h = self.embed_tokens(ids)
        router_logits = []
        for layer in self.layers:
            h, logits = layer(h)
            router_logits.append(logits)
        return self.norm(h), router_logits


def load_balancing_loss_func(gate_logits: list, num_experts: int, top_k: int) -> torch.Tensor:
    """HF's, without an attention mask: the layers' router logits concatenated."""
    concatenated = torch.cat(gate_logits, dim=0)
    routing_weights = F.softmax(concatenated, dim=-1)
    _, selected_experts = torch.topk(routing_weights, top_k, dim=-1)
    expert_mask = F.one_hot(selected_experts, num_experts)
    tokens_per_expert = torch.mean(expert_mask.to(routing_weights.dtype), dim=0)
    router_prob_per_expert = torch.mean(routing_weights, dim=0)
    return torch.sum(tokens_per_expert * router_prob_per_expert.unsqueeze(0)) * num_experts


def router_z_loss_func(gate_logits: list) -> torch.Tensor:
    """ST-MoE (Zoph et al. 2022) / HF SwitchTransformers' z-loss over the concatenated rows."""
    log_z = torch.logsumexp(torch.cat(gate_logits, dim=0), dim=-1)
    return torch.mean(log_z ** 2)


class MixtralForCausalLM(nn.Module):
    def __init__(self, c: MixtralConfig):
        super().__init__()
        self.config = c
        self.model = MixtralModel(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        if c.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, ids: torch.Tensor, targets: torch.Tensor):
        """Returns (logits [B, T, V], ce, aux, z, total loss)."""
        c = self.config
        h, router_logits = self.model(ids)
        logits = self.lm_head(h)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        aux = load_balancing_loss_func(router_logits, c.num_local_experts, c.num_experts_per_tok)
        z = router_z_loss_func(router_logits)
        return logits, ce, aux, z, ce + c.router_aux_loss_coef * aux + c.router_z_loss_coef * z


def parameter_names(c: MixtralConfig) -> list:
    """HF's Mixtral names in Bonsai's order, experts one by one."""
    names = ["model.embed_tokens.weight"]
    for l in range(c.num_hidden_layers):
        p = f"model.layers.{l}."
        names += [p + s for s in ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                                  "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                                  "block_sparse_moe.gate.weight")]
        for w in ("w1", "w3", "w2"):
            names += [p + f"block_sparse_moe.experts.{e}.{w}.weight" for e in range(c.num_local_experts)]
    names.append("model.norm.weight")
    if not c.tie_word_embeddings:
        names.append("lm_head.weight")
    return names
