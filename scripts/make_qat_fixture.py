"""Write test/fixtures/qat_activations.json: PyTorch's per-token symmetric int8 fake quantization of
activations, the reference for ops.fakeQuantizeActivations (test/qat.test.ts reads it).

Regenerate with:

    /usr/bin/python3 scripts/make_qat_fixture.py

Per row of x (float32): s = absmax / 127, y = clamp(round(x / s), -127, 127) * s, all in float32;
torch.round rounds half to even; a row of zeros stays zero. Rows at many scales, rows with values on
exact .5 ties of their step, a zero row. Deterministic (seeded); values are float32, written as the
shortest decimal that reads back as the same float32 widened to float64 (Python's repr of a double).
"""
import json
import sys

import torch


def fake_quant_per_token(x: torch.Tensor) -> torch.Tensor:
    s = x.abs().amax(dim=-1, keepdim=True) / 127
    safe = torch.where(s == 0, torch.ones_like(s), s)  # zero rows: q = 0 either way
    q = torch.round(x / safe).clamp(-127, 127)
    return torch.where(s == 0, torch.zeros_like(x), q * s)


def main() -> None:
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "test/fixtures/qat_activations.json"
    g = torch.Generator().manual_seed(20261129)
    rows, dim = 24, 64
    x = torch.randn(rows, dim, generator=g, dtype=torch.float32)
    x *= torch.logspace(-6, 4, rows, dtype=torch.float32).unsqueeze(1)
    # Ties: s = 2^k exactly (absmax = 127·2^k), values (m + 1/2)·2^k.
    for r, k in ((3, -3), (11, 0), (17, 5)):
        step = 2.0**k
        x[r] = (torch.arange(dim, dtype=torch.float32) - 32 + 0.5) * step
        x[r, 0] = 127 * step
    x[7] = 0
    y = fake_quant_per_token(x)
    assert y.dtype == torch.float32
    data = {
        "description": "per-token int8 fake quantization: s = absmax/127, round half to even, clamp to [-127, 127], float32",
        "shape": [rows, dim],
        "x": [float(v) for v in x.flatten().tolist()],
        "y": [float(v) for v in y.flatten().tolist()],
    }
    with open(out, "w") as f:
        json.dump(data, f)
        f.write("\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
