"""Write test/fixtures/distill.json: knowledge-distillation losses and their gradients by PyTorch.

Regenerate with (Debian's python3-torch, as scripts/make_fixtures.py):

    /usr/bin/python3 scripts/make_kd_fixtures.py

Per row r of student logits s and teacher logits t (float32-representable values, float64 maths):
    L_r = a * CE(y_r, softmax(s_r)) + (1 - a) * tau^2 * D(p_r, q_r),  q = softmax(s/tau), p = softmax(t/tau)
with D = KL(p||q) (forward-kl), KL(q||p) (reverse-kl), or TRL's generalized_jsd_loss (the code below
follows trl.GKDTrainer.generalized_jsd_loss: beta = 0 / 1 are the two KLs, else the mixture in log space).
Target -1: the row is ignored (loss 0); target -2: no ground truth, L_r = tau^2 * D alone.
Sparse cases give the teacher as its top-k log-probabilities at tau (rounded to float32); the residual
mass is one more outcome: p_R = max(1 - sum top-k p, 1e-30), q_R = the student's mass off the top-k.
Fields: rows, vocab, student, teacher (flat [rows, vocab]), targets, probe (weights w_r; "grad" is
d(sum_r w_r L_r)/d student), cases [{name, loss, alpha, temperature, beta, k?, ids?, log_probs?, losses, grad}].
"""

import json
import math
import os
import sys

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS, VOCAB = 6, 9
TARGETS = [3, 0, -1, 8, -2, 5]


def f32(t):
    return t.to(torch.float32).to(torch.float64)


def generalized_jsd(student_log_probs, teacher_log_probs, beta):
    """TRL's generalized_jsd_loss on log-probabilities (already at temperature), per row sums."""
    if beta == 0:
        jsd = F.kl_div(student_log_probs, teacher_log_probs, reduction="none", log_target=True)
    elif beta == 1:
        jsd = F.kl_div(teacher_log_probs, student_log_probs, reduction="none", log_target=True)
    else:
        b = torch.tensor(beta, dtype=student_log_probs.dtype)
        mixture = torch.logsumexp(torch.stack([student_log_probs + torch.log(1 - b), teacher_log_probs + torch.log(b)]), dim=0)
        kl_teacher = F.kl_div(mixture, teacher_log_probs, reduction="none", log_target=True)
        kl_student = F.kl_div(mixture, student_log_probs, reduction="none", log_target=True)
        jsd = b * kl_teacher + (1 - b) * kl_student
    return jsd.sum(-1)


def divergence(loss, lq, lp, beta):
    if loss == "forward-kl":
        return F.kl_div(lq, lp, reduction="none", log_target=True).sum(-1)  # sum p (lp - lq)
    if loss == "reverse-kl":
        return F.kl_div(lp, lq, reduction="none", log_target=True).sum(-1)  # sum q (lq - lp)
    return generalized_jsd(lq, lp, beta)


def row_losses(s, t, loss, alpha, tau, beta, sparse=None):
    y = torch.tensor(TARGETS)
    lq = F.log_softmax(s / tau, dim=-1)
    if sparse is None:
        lp = F.log_softmax(t / tau, dim=-1)
    else:
        ids, lp_top = sparse
        k = ids.shape[1]
        lq_top = lq.gather(1, ids)
        if k < VOCAB:
            mask = torch.zeros_like(lq, dtype=torch.bool).scatter(1, ids, True)
            lq_rest = torch.logsumexp(lq.masked_fill(mask, -math.inf), dim=-1, keepdim=True)
            p_rest = torch.clamp(1 - lp_top.exp().sum(-1, keepdim=True), min=1e-30)
            lq = torch.cat([lq_top, lq_rest], dim=1)
            lp = torch.cat([lp_top, p_rest.log()], dim=1)
        else:
            lq, lp = lq_top, lp_top
    d = divergence(loss, lq, lp, beta)
    ce = F.cross_entropy(s, y.clamp(min=0), reduction="none")
    has_y = (y >= 0).to(s.dtype)
    kd_only = (y == -2).to(s.dtype)
    out = has_y * (alpha * ce + (1 - alpha) * tau * tau * d) + kd_only * tau * tau * d
    return out


def flat(t):
    vals = t.detach().reshape(-1).tolist()
    assert all(math.isfinite(v) for v in vals)
    return vals


def main():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(2718)
    student = f32(1.5 * torch.randn(ROWS, VOCAB, generator=g, dtype=torch.float32))
    teacher = f32(2.0 * torch.randn(ROWS, VOCAB, generator=g, dtype=torch.float32))
    probe = f32(torch.randn(ROWS, generator=g, dtype=torch.float32))
    dense = [
        ("forward-kl", 0.5, 2.0, 0.5), ("forward-kl", 0.0, 1.0, 0.5), ("reverse-kl", 0.3, 1.5, 0.5),
        ("jsd", 0.5, 1.0, 0.5), ("jsd", 0.2, 3.0, 0.1), ("jsd", 0.0, 2.0, 0.9),
        ("jsd", 0.5, 2.0, 0.0), ("jsd", 0.5, 2.0, 1.0),
    ]
    sparse = [("forward-kl", 0.5, 2.0, 0.5, 3), ("reverse-kl", 0.3, 1.5, 0.5, 3), ("jsd", 0.4, 1.0, 0.5, 3), ("jsd", 0.0, 2.0, 0.2, 1),
              ("forward-kl", 0.4, 1.5, 0.5, VOCAB)]
    cases = []
    for loss, alpha, tau, beta, *k in [(*c,) for c in dense] + sparse:
        s = student.clone().requires_grad_(True)
        entry = {"name": f"{loss} alpha={alpha} tau={tau} beta={beta}" + (f" top-{k[0]}" if k else ""),
                 "loss": loss, "alpha": alpha, "temperature": tau, "beta": beta}
        sp = None
        if k:
            lp_all = F.log_softmax(teacher / tau, dim=-1)
            top = lp_all.topk(k[0], dim=-1)
            sp = (top.indices, f32(top.values))
            entry.update({"k": k[0], "ids": flat(top.indices), "log_probs": flat(sp[1])})
        losses = row_losses(s, teacher, loss, alpha, tau, beta, sp)
        (losses * probe).sum().backward()
        entry.update({"losses": flat(losses), "grad": flat(s.grad)})
        cases.append(entry)
    # The TRL special cases are the plain KLs.
    by = {c["name"]: c for c in cases}
    for beta, other in [(0.0, "forward-kl"), (1.0, "reverse-kl")]:
        a = by[f"jsd alpha=0.5 tau=2.0 beta={beta}"]["losses"]
        b = row_losses(student, teacher, other, 0.5, 2.0, 0.5)
        assert max(abs(x - y) for x, y in zip(a, flat(b))) < 1e-12
    out = {
        "description": __doc__.strip().split("\n")[0],
        "generator": "scripts/make_kd_fixtures.py (PyTorch, float64)",
        "rows": ROWS, "vocab": VOCAB, "targets": TARGETS,
        "student": flat(student), "teacher": flat(teacher), "probe": flat(probe), "cases": cases,
    }
    out_dir = sys.argv[2] if len(sys.argv) == 3 and sys.argv[1] == "--out" else os.path.join(ROOT, "test", "fixtures")
    path = os.path.join(out_dir, "distill.json")
    with open(path, "w") as f:
        f.write("{\n" + ",\n".join(json.dumps(k) + ":" + json.dumps(v, separators=(",", ":")) for k, v in out.items()) + "\n}\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
