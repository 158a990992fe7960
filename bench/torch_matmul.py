"""PyTorch single-thread matmul throughput, the yardstick for bench/matmul.ts.

Input (JSON, argv[1] or stdin): [{"m":..,"n":..,"k":..,"transA":bool,"transB":bool}, ...] with the
Bonsai convention: C[m,n] = op(A)·op(B), A stored [m,k] (or [k,m] when transA), B stored [k,n]
(or [n,k] when transB). Output (stdout, JSON): [{"gflops": .., "seconds": ..}, ...], the median
over several timed batches, each batch long enough (~20 ms) for the clock to be meaningful.
"""
import json
import statistics
import sys
import time

import torch


def bench(m, n, k, trans_a, trans_b, samples=9, min_batch_s=0.02):
    a = torch.randn(k, m) if trans_a else torch.randn(m, k)
    b = torch.randn(n, k) if trans_b else torch.randn(k, n)
    c = torch.empty(m, n)
    op_a = a.t() if trans_a else a  # transposed views: BLAS takes the flag, no copy
    op_b = b.t() if trans_b else b

    def run():
        torch.mm(op_a, op_b, out=c)

    # Warm up and size a batch.
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            run()
        dt = time.perf_counter() - t0
        if dt >= min_batch_s:
            break
        reps *= 2
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(reps):
            run()
        times.append((time.perf_counter() - t0) / reps)
    sec = statistics.median(times)
    return {"gflops": 2.0 * m * n * k / sec / 1e9, "seconds": sec}


def main():
    torch.set_num_threads(1)
    raw = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read()
    shapes = json.loads(raw)
    out = [bench(s["m"], s["n"], s["k"], bool(s.get("transA")), bool(s.get("transB"))) for s in shapes]
    print(json.dumps({"torch": torch.__version__, "results": out}))


if __name__ == "__main__":
    main()
