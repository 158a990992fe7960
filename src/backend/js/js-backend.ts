// The reference backend: plain TypeScript loops over typed arrays. It favours obviousness over
// speed; by default it computes in float64 so that finite-difference gradient checks are precise.
import { type Backend, type BlockQuantType, type Buf, type FloatArray, type KdParams, type QBuf, type QuantType, dropoutUniform, quantRowBytes } from "../backend.js";
import { fakeQuantizeRowsValues, fakeQuantizeValues } from "../fake-quant.js";
import { type TopK, topKOf } from "../top-k.js";
import { checkQuantized, checkQuantizedWrite, f16Values, quantizedValues } from "../quantized-blocks.js";

class JsBuf implements Buf {
  constructor(public data: FloatArray | null) {}
  get length(): number {
    return this.arr.length;
  }
  get arr(): FloatArray {
    if (this.data === null) throw new Error("js backend: buffer used after free");
    return this.data;
  }
}

const a = (b: Buf): FloatArray => (b as JsBuf).arr;

class JsQBuf implements QBuf {
  constructor(
    readonly type: QuantType,
    readonly rows: number,
    readonly cols: number,
    public bytes: Uint8Array | null,
  ) {}
}

export class JsBackend implements Backend {
  readonly name = "js";
  constructor(readonly dtype: "f32" | "f64" = "f64") {}

  alloc(length: number): Buf {
    return new JsBuf(this.dtype === "f64" ? new Float64Array(length) : new Float32Array(length));
  }
  free(buf: Buf): void {
    const jb = buf as JsBuf;
    if (jb.data === null) throw new Error("js backend: double free");
    jb.data = null;
  }
  write(buf: Buf, src: ArrayLike<number>, offset = 0): void {
    const d = a(buf);
    if (offset + src.length > d.length) throw new Error(`write of ${src.length} at ${offset} overflows buffer of ${d.length}`);
    d.set(src, offset);
  }
  async read(buf: Buf, offset = 0, length = buf.length - offset): Promise<FloatArray> {
    return this.readSync(buf, offset, length);
  }
  readSync(buf: Buf, offset = 0, length = buf.length - offset): FloatArray {
    return a(buf).slice(offset, offset + length);
  }
  async readInto(buf: Buf, dst: FloatArray, offset = 0): Promise<void> {
    const d = a(buf);
    if (offset + dst.length > d.length) throw new Error(`read of ${dst.length} at ${offset} overflows buffer of ${d.length}`);
    dst.set(d.subarray(offset, offset + dst.length));
  }
  async readTopK(buf: Buf, offset: number, n: number, k: number): Promise<TopK> {
    const d = a(buf);
    if (offset + n > d.length) throw new Error(`top-k of ${n} at ${offset} overflows buffer of ${d.length}`);
    return topKOf(d, k, offset, n);
  }
  fill(buf: Buf, value: number): void {
    a(buf).fill(value);
  }
  copy(dst: Buf, dstOffset: number, src: Buf, srcOffset: number, n: number): void {
    a(dst).set(a(src).subarray(srcOffset, srcOffset + n), dstOffset);
  }

  add(out: Buf, x: Buf, y: Buf): void {
    const o = a(out), p = a(x), q = a(y);
    for (let i = 0; i < o.length; i++) o[i] = p[i] + q[i];
  }
  axpy(acc: Buf, x: Buf, alpha: number): void {
    const o = a(acc), p = a(x);
    for (let i = 0; i < o.length; i++) o[i] += alpha * p[i];
  }
  scale(buf: Buf, s: number): void {
    const o = a(buf);
    for (let i = 0; i < o.length; i++) o[i] *= s;
  }
  async sum(buf: Buf): Promise<number> {
    let s = 0;
    for (const v of a(buf)) s += v;
    return s;
  }
  async sumSquares(buf: Buf): Promise<number> {
    let s = 0;
    for (const v of a(buf)) s += v * v;
    return s;
  }
  scaleColumns(x: Buf, gain: Buf, offset: number, rows: number, cols: number): void {
    const X = a(x), g = a(gain);
    if (offset + rows * cols > X.length || g.length < cols) throw new Error(`scaleColumns: ${rows}×${cols} at ${offset} overflows buffer of ${X.length}`);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) X[offset + r * cols + c] *= g[c];
  }
  fakeQuantize(out: Buf, x: Buf, type: BlockQuantType): void {
    // The f32 numbers an export stores, quantized as ggml does (an f64 backend's rounded to f32 first).
    a(out).set(fakeQuantizeValues(type, Float32Array.from(a(x))));
  }
  fakeQuantizeRows(out: Buf, x: Buf, rows: number, dim: number): void {
    a(out).set(fakeQuantizeRowsValues(Float32Array.from(a(x)), rows, dim));
  }

  matmul(c: Buf, ab: Buf, bb: Buf, m: number, n: number, k: number, transA: boolean, transB: boolean, accumulate: boolean): void {
    const C = a(c), A = a(ab), B = a(bb);
    const row = new Float64Array(n); // one output row, summed in float64
    for (let i = 0; i < m; i++) {
      if (transB) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += (transA ? A[p * m + i] : A[i * k + p]) * B[j * k + p];
          row[j] = s;
        }
      } else {
        // i-p-j order: stream rows of B instead of striding down its columns.
        row.fill(0);
        for (let p = 0; p < k; p++) {
          const av = transA ? A[p * m + i] : A[i * k + p];
          if (av === 0) continue;
          for (let j = 0, off = p * n; j < n; j++) row[j] += av * B[off + j];
        }
      }
      for (let j = 0; j < n; j++) C[i * n + j] = accumulate ? C[i * n + j] + row[j] : row[j];
    }
  }

  allocQuantized(type: QuantType, rows: number, cols: number, bytes?: Uint8Array): QBuf {
    const size = rows * quantRowBytes(type, cols);
    checkQuantized(type, rows, cols, bytes?.length ?? size);
    return new JsQBuf(type, rows, cols, bytes === undefined ? new Uint8Array(size) : bytes.slice(0, size));
  }
  writeQuantized(w: QBuf, row: number, bytes: Uint8Array): void {
    const q = w as JsQBuf;
    if (q.bytes === null) throw new Error("js backend: quantized matrix used after free");
    checkQuantizedWrite(q, row, bytes.length);
    q.bytes.set(bytes, row * quantRowBytes(q.type, q.cols));
  }
  freeQuantized(w: QBuf): void {
    const q = w as JsQBuf;
    if (q.bytes === null) throw new Error("js backend: double free of a quantized matrix");
    q.bytes = null;
  }
  matmulQuantized(c: Buf, ab: Buf, w: QBuf, m: number, n: number, k: number, accumulate: boolean): void {
    const q = w as JsQBuf;
    if (q.bytes === null) throw new Error("js backend: quantized matrix used after free");
    if (q.rows !== n || q.cols !== k) throw new RangeError(`js backend: quantized matrix is [${q.rows}, ${q.cols}], matmul needs [${n}, ${k}]`);
    const C = a(c), A = a(ab);
    if (q.type === "f16") {
      // No blocks: Σ_e w_e·x_e over the row's f16 values, in float64 (f32 activations as given).
      const row = new Float64Array(k);
      for (let j = 0; j < n; j++) {
        f16Values(q.bytes, j, k, row);
        for (let i = 0; i < m; i++) {
          let s = 0;
          for (let e = 0; e < k; e++) s += row[e] * A[i * k + e];
          C[i * n + j] = accumulate ? C[i * n + j] + s : s;
        }
      }
      return;
    }
    const type = q.type;
    // Blockwise, as the definition reads: Σ_blocks d · Σ_j q_j·x_j, in float64.
    const values = new Float64Array(32);
    const blocks = k / 32;
    for (let j = 0; j < n; j++) {
      for (let i = 0; i < m; i++) {
        let s = 0;
        for (let b = 0; b < blocks; b++) {
          const d = quantizedValues(type, q.bytes, j * blocks + b, values);
          let t = 0;
          for (let e = 0; e < 32; e++) t += values[e] * A[i * k + b * 32 + e];
          s += d * t;
        }
        C[i * n + j] = accumulate ? C[i * n + j] + s : s;
      }
    }
  }

  embedding(out: Buf, table: Buf, ids: Int32Array, dim: number): void {
    const o = a(out), t = a(table);
    const rows = t.length / dim;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id < 0 || id >= rows) throw new Error(`token id ${id} out of range [0, ${rows})`);
      o.set(t.subarray(id * dim, id * dim + dim), i * dim);
    }
  }
  embeddingQuantized(out: Buf, table: QBuf, ids: Int32Array): void {
    const q = table as JsQBuf;
    if (q.bytes === null) throw new Error("js backend: quantized matrix used after free");
    const o = a(out), cols = q.cols;
    if (o.length < ids.length * cols) throw new RangeError(`js backend: embedding out needs ${ids.length * cols} numbers, has ${o.length}`);
    const row = new Float64Array(cols), values = new Float64Array(32);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id < 0 || id >= q.rows) throw new Error(`token id ${id} out of range [0, ${q.rows})`);
      if (q.type === "f16") f16Values(q.bytes, id, cols, row);
      else
        for (let b = 0, blocks = cols / 32; b < blocks; b++) {
          // d·q is exact in f32 (an 11-bit scale times an integer of at most 8 bits): ggml's value.
          const d = quantizedValues(q.type, q.bytes, id * blocks + b, values);
          for (let e = 0; e < 32; e++) row[b * 32 + e] = d * values[e];
        }
      o.set(row, i * cols);
    }
  }
  embeddingBackward(dTable: Buf, dOut: Buf, ids: Int32Array, dim: number): void {
    const dt = a(dTable), d = a(dOut);
    const rows = dt.length / dim;
    for (let i = 0; i < ids.length; i++) {
      if (ids[i] < 0 || ids[i] >= rows) throw new Error(`token id ${ids[i]} out of range [0, ${rows})`);
      const base = ids[i] * dim;
      for (let j = 0; j < dim; j++) dt[base + j] += d[i * dim + j];
    }
  }

  rmsnorm(out: Buf, rstd: Buf, x: Buf, w: Buf, rows: number, dim: number, eps: number): void {
    const o = a(out), r = a(rstd), X = a(x), W = a(w);
    for (let i = 0; i < rows; i++) {
      let ss = 0;
      for (let j = 0; j < dim; j++) ss += X[i * dim + j] * X[i * dim + j];
      const s = 1 / Math.sqrt(ss / dim + eps);
      r[i] = s;
      for (let j = 0; j < dim; j++) o[i * dim + j] = X[i * dim + j] * s * W[j];
    }
  }
  rmsnormBackward(dx: Buf, dw: Buf, dOut: Buf, x: Buf, w: Buf, rstd: Buf, rows: number, dim: number): void {
    const DX = a(dx), DW = a(dw), DO = a(dOut), X = a(x), W = a(w), R = a(rstd);
    for (let i = 0; i < rows; i++) {
      const s = R[i];
      // y_j = x_j s w_j;  dx_j = s (g_j w_j) − s³ x_j · mean_k(g_k w_k x_k)
      let dot = 0;
      for (let j = 0; j < dim; j++) dot += DO[i * dim + j] * W[j] * X[i * dim + j];
      const c = (s * s * s * dot) / dim;
      for (let j = 0; j < dim; j++) {
        const g = DO[i * dim + j];
        DX[i * dim + j] += s * g * W[j] - c * X[i * dim + j];
        DW[j] += g * X[i * dim + j] * s;
      }
    }
  }

  rope(out: Buf, x: Buf, cos: Buf, sin: Buf, batch: number, seq: number, heads: number, headDim: number, posOffset: number): void {
    this.rotate(a(out), a(x), a(cos), a(sin), batch, seq, heads, headDim, posOffset, 1, false);
  }
  ropeBackward(dx: Buf, dOut: Buf, cos: Buf, sin: Buf, batch: number, seq: number, heads: number, headDim: number, posOffset: number): void {
    this.rotate(a(dx), a(dOut), a(cos), a(sin), batch, seq, heads, headDim, posOffset, -1, true);
  }
  private rotate(o: FloatArray, X: FloatArray, C: FloatArray, S: FloatArray, batch: number, seq: number, heads: number, headDim: number, posOffset: number, sign: number, accumulate: boolean): void {
    const half = headDim / 2;
    for (let b = 0; b < batch; b++)
      for (let t = 0; t < seq; t++) {
        const pos = posOffset + t;
        for (let h = 0; h < heads; h++) {
          const base = ((b * seq + t) * heads + h) * headDim;
          for (let i = 0; i < half; i++) {
            const c = C[pos * half + i], s = sign * S[pos * half + i];
            const x1 = X[base + i], x2 = X[base + i + half];
            const y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
            if (accumulate) {
              o[base + i] += y1;
              o[base + i + half] += y2;
            } else {
              o[base + i] = y1;
              o[base + i + half] = y2;
            }
          }
        }
      }
  }

  attention(out: Buf, probs: Buf, q: Buf, k: Buf, v: Buf, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void {
    const O = a(out), P = a(probs), Q = a(q), K = a(k), V = a(v);
    const group = heads / kvHeads;
    for (let b = 0; b < batch; b++)
      for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / group);
        for (let t = 0; t < seq; t++) {
          const qb = ((b * seq + t) * heads + h) * headDim;
          const pb = ((b * heads + h) * seq + t) * seq;
          let max = -Infinity;
          for (let s = 0; s <= t; s++) {
            const kb = ((b * seq + s) * kvHeads + kh) * headDim;
            let dot = 0;
            for (let d = 0; d < headDim; d++) dot += Q[qb + d] * K[kb + d];
            P[pb + s] = dot * scale;
            if (P[pb + s] > max) max = P[pb + s];
          }
          let z = 0;
          for (let s = 0; s <= t; s++) {
            P[pb + s] = Math.exp(P[pb + s] - max);
            z += P[pb + s];
          }
          for (let s = 0; s <= t; s++) P[pb + s] /= z;
          for (let s = t + 1; s < seq; s++) P[pb + s] = 0;
          for (let d = 0; d < headDim; d++) {
            let acc = 0;
            for (let s = 0; s <= t; s++) acc += P[pb + s] * V[((b * seq + s) * kvHeads + kh) * headDim + d];
            O[qb + d] = acc;
          }
        }
      }
  }
  attentionCached(out: Buf, q: Buf, kCache: Buf, vCache: Buf, seq: number, heads: number, kvHeads: number, headDim: number, posOffset: number, scale: number): void {
    const O = a(out), Q = a(q), K = a(kCache), V = a(vCache);
    const group = heads / kvHeads, kvDim = kvHeads * headDim;
    const p = new Float64Array(posOffset + seq);
    for (let t = 0; t < seq; t++) {
      const n = posOffset + t + 1; // cache rows this query may see
      for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / group);
        const qb = (t * heads + h) * headDim;
        let max = -Infinity;
        for (let s = 0; s < n; s++) {
          let dot = 0;
          for (let d = 0; d < headDim; d++) dot += Q[qb + d] * K[s * kvDim + kh * headDim + d];
          p[s] = dot * scale;
          if (p[s] > max) max = p[s];
        }
        let z = 0;
        for (let s = 0; s < n; s++) z += p[s] = Math.exp(p[s] - max);
        for (let s = 0; s < n; s++) p[s] /= z;
        for (let d = 0; d < headDim; d++) {
          let acc = 0;
          for (let s = 0; s < n; s++) acc += p[s] * V[s * kvDim + kh * headDim + d];
          O[qb + d] = acc;
        }
      }
    }
  }
  attentionBackward(dq: Buf, dk: Buf, dv: Buf, dOut: Buf, q: Buf, k: Buf, v: Buf, probs: Buf, batch: number, seq: number, heads: number, kvHeads: number, headDim: number, scale: number): void {
    const DQ = a(dq), DK = a(dk), DV = a(dv), DO = a(dOut), Q = a(q), K = a(k), V = a(v), P = a(probs);
    const group = heads / kvHeads;
    const dp = new Float64Array(seq);
    for (let b = 0; b < batch; b++)
      for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / group);
        for (let t = 0; t < seq; t++) {
          const qb = ((b * seq + t) * heads + h) * headDim;
          const pb = ((b * heads + h) * seq + t) * seq;
          // dP = dO · V^T ; dV += P^T dO ; dS = P ⊙ (dP − Σ P dP) ; dQ += scale dS K ; dK += scale dS^T Q
          let pdp = 0;
          for (let s = 0; s <= t; s++) {
            const vb = ((b * seq + s) * kvHeads + kh) * headDim;
            let dot = 0;
            for (let d = 0; d < headDim; d++) {
              dot += DO[qb + d] * V[vb + d];
              DV[vb + d] += P[pb + s] * DO[qb + d];
            }
            dp[s] = dot;
            pdp += P[pb + s] * dot;
          }
          for (let s = 0; s <= t; s++) {
            const ds = P[pb + s] * (dp[s] - pdp) * scale;
            const kb = ((b * seq + s) * kvHeads + kh) * headDim;
            for (let d = 0; d < headDim; d++) {
              DQ[qb + d] += ds * K[kb + d];
              DK[kb + d] += ds * Q[qb + d];
            }
          }
        }
      }
  }

  swiglu(out: Buf, gate: Buf, up: Buf): void {
    const o = a(out), g = a(gate), u = a(up);
    for (let i = 0; i < o.length; i++) o[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
  }
  swigluBackward(dGate: Buf, dUp: Buf, dOut: Buf, gate: Buf, up: Buf): void {
    const dg = a(dGate), du = a(dUp), d = a(dOut), g = a(gate), u = a(up);
    for (let i = 0; i < d.length; i++) {
      const sig = 1 / (1 + Math.exp(-g[i]));
      du[i] += d[i] * g[i] * sig;
      dg[i] += d[i] * u[i] * sig * (1 + g[i] * (1 - sig));
    }
  }

  crossEntropy(losses: Buf, lse: Buf, logits: Buf, targets: Int32Array, rows: number, vocab: number): void {
    const L = a(losses), E = a(lse), X = a(logits);
    for (let r = 0; r < rows; r++) {
      let max = -Infinity;
      for (let j = 0; j < vocab; j++) max = Math.max(max, X[r * vocab + j]);
      let z = 0;
      for (let j = 0; j < vocab; j++) z += Math.exp(X[r * vocab + j] - max);
      E[r] = max + Math.log(z);
      const t = targets[r];
      if (t >= vocab) throw new Error(`target ${t} out of range [0, ${vocab})`);
      L[r] = t < 0 ? 0 : E[r] - X[r * vocab + t];
    }
  }
  crossEntropyBackward(dLogits: Buf, logits: Buf, lse: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number): void {
    const D = a(dLogits), X = a(logits), E = a(lse), DL = a(dLosses);
    for (let r = 0; r < rows; r++) {
      const t = targets[r];
      if (t < 0) continue;
      if (t >= vocab) throw new Error(`target ${t} out of range [0, ${vocab})`);
      const g = DL[r];
      for (let j = 0; j < vocab; j++) D[r * vocab + j] += g * (Math.exp(X[r * vocab + j] - E[r]) - (j === t ? 1 : 0));
    }
  }

  // Distillation: see backend.ts. Per outcome o the divergence adds kdTerm(lq_o, lp_o) and its
  // gradient in log q is kdGrad; through the softmax, ∂D/∂z_j = Σ_o kdGrad_o·∂log q_o/∂z_j.
  distill(losses: Buf, stats: Buf, student: Buf, teacher: Buf, targets: Int32Array, rows: number, vocab: number, kd: KdParams): void {
    const L = a(losses), S = a(stats), X = a(student), P = a(teacher), inv = 1 / kd.temperature;
    for (let r = 0; r < rows; r++) {
      const t = kdTarget(targets, r, vocab);
      if (t === -1) {
        L[r] = 0;
        continue;
      }
      const o = r * vocab;
      const lse1 = lseRow(X, o, vocab, 1), lseS = lseRow(X, o, vocab, inv), lseP = lseRow(P, o, vocab, inv);
      let d = 0, g = 0;
      for (let j = 0; j < vocab; j++) {
        const lq = X[o + j] * inv - lseS, lp = P[o + j] * inv - lseP;
        d += kdTerm(kd, lq, lp);
        g += kdGrad(kd, lq, lp);
      }
      L[r] = kdWeightCe(t, kd) * (t >= 0 ? lse1 - X[o + t] : 0) + kdWeightKd(t, kd) * d;
      S.set([lse1, lseS, lseP, g], r * 4);
    }
  }
  distillBackward(dStudent: Buf, student: Buf, teacher: Buf, stats: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number, kd: KdParams): void {
    const D = a(dStudent), X = a(student), P = a(teacher), S = a(stats), DL = a(dLosses), inv = 1 / kd.temperature;
    for (let r = 0; r < rows; r++) {
      const t = kdTarget(targets, r, vocab);
      if (t === -1) continue;
      const [lse1, lseS, lseP, G] = S.subarray(r * 4, r * 4 + 4);
      const wce = DL[r] * kdWeightCe(t, kd), wkd = (DL[r] * kdWeightKd(t, kd)) / kd.temperature;
      const o = r * vocab;
      for (let j = 0; j < vocab; j++) {
        const lq = X[o + j] * inv - lseS, lp = P[o + j] * inv - lseP;
        const dz = kdGrad(kd, lq, lp) - Math.exp(lq) * G;
        D[o + j] += wkd * dz + wce * (Math.exp(X[o + j] - lse1) - (j === t ? 1 : 0));
      }
    }
  }
  distillSparse(losses: Buf, stats: Buf, student: Buf, teacherIds: Int32Array, teacherLogProbs: Buf, targets: Int32Array, rows: number, vocab: number, k: number, kd: KdParams): void {
    const L = a(losses), S = a(stats), X = a(student), LP = a(teacherLogProbs), inv = 1 / kd.temperature;
    const inTop = new Uint8Array(vocab);
    for (let r = 0; r < rows; r++) {
      const t = kdTarget(targets, r, vocab);
      if (t === -1) {
        L[r] = 0;
        continue;
      }
      const o = r * vocab, ids = kdIds(teacherIds, r, k, vocab);
      const lse1 = lseRow(X, o, vocab, 1), lseS = lseRow(X, o, vocab, inv);
      for (const id of ids) inTop[id] = 1;
      let zr = 0;
      for (let j = 0; j < vocab; j++) if (!inTop[j]) zr += Math.exp(X[o + j] * inv - lseS);
      for (const id of ids) inTop[id] = 0;
      const lqR = Math.log(zr), lpR = kdResidualTeacher(LP, r * k, k, vocab);
      let d = 0, g = 0;
      for (let i = 0; i < k; i++) {
        const lq = X[o + ids[i]] * inv - lseS, lp = LP[r * k + i];
        d += kdTerm(kd, lq, lp);
        g += kdGrad(kd, lq, lp);
      }
      if (k < vocab) {
        d += kdTerm(kd, lqR, lpR);
        g += kdGrad(kd, lqR, lpR);
      }
      L[r] = kdWeightCe(t, kd) * (t >= 0 ? lse1 - X[o + t] : 0) + kdWeightKd(t, kd) * d;
      S.set([lse1, lseS, lqR, g], r * 4);
    }
  }
  distillSparseBackward(dStudent: Buf, student: Buf, teacherIds: Int32Array, teacherLogProbs: Buf, stats: Buf, targets: Int32Array, dLosses: Buf, rows: number, vocab: number, k: number, kd: KdParams): void {
    const D = a(dStudent), X = a(student), LP = a(teacherLogProbs), S = a(stats), DL = a(dLosses), inv = 1 / kd.temperature;
    const inTop = new Uint8Array(vocab);
    for (let r = 0; r < rows; r++) {
      const t = kdTarget(targets, r, vocab);
      if (t === -1) continue;
      const [lse1, lseS, lqR, G] = S.subarray(r * 4, r * 4 + 4);
      const wce = DL[r] * kdWeightCe(t, kd), wkd = (DL[r] * kdWeightKd(t, kd)) / kd.temperature;
      const o = r * vocab, ids = kdIds(teacherIds, r, k, vocab);
      // Tokens outside the top-k share the residual outcome: ∂log q_R/∂z_j = q_j/q_R − q_j.
      const gR = k < vocab ? kdGrad(kd, lqR, kdResidualTeacher(LP, r * k, k, vocab)) : 0;
      for (const id of ids) inTop[id] = 1;
      for (let j = 0; j < vocab; j++) {
        const lq = X[o + j] * inv - lseS;
        let dz = -Math.exp(lq) * G;
        if (!inTop[j] && lqR > -Infinity) dz += gR * Math.exp(lq - lqR);
        D[o + j] += wkd * dz + wce * (Math.exp(X[o + j] - lse1) - (j === t ? 1 : 0));
      }
      for (const id of ids) inTop[id] = 0;
      for (let i = 0; i < k; i++) D[o + ids[i]] += wkd * kdGrad(kd, X[o + ids[i]] * inv - lseS, LP[r * k + i]);
    }
  }

  dropout(out: Buf, mask: Buf, x: Buf, p: number, seed: number): void {
    const o = a(out), M = a(mask), X = a(x);
    const keep = 1 / (1 - p);
    for (let i = 0; i < o.length; i++) {
      M[i] = dropoutUniform(seed, i) >= p ? keep : 0;
      o[i] = X[i] * M[i];
    }
  }
  dropoutBackward(dx: Buf, dOut: Buf, mask: Buf): void {
    const o = a(dx), d = a(dOut), M = a(mask);
    for (let i = 0; i < o.length; i++) o[i] += d[i] * M[i];
  }

  softmax(out: Buf, x: Buf, rows: number, cols: number): void {
    const o = a(out), X = a(x);
    for (let r = 0; r < rows; r++) {
      const off = r * cols;
      let max = -Infinity;
      for (let c = 0; c < cols; c++) max = Math.max(max, X[off + c]);
      let sum = 0;
      for (let c = 0; c < cols; c++) sum += Math.exp(X[off + c] - max);
      for (let c = 0; c < cols; c++) o[off + c] = Math.exp(X[off + c] - max) / sum;
    }
  }
  softmaxBackward(dx: Buf, dOut: Buf, y: Buf, rows: number, cols: number): void {
    const g = a(dx), d = a(dOut), Y = a(y);
    for (let r = 0; r < rows; r++) {
      const off = r * cols;
      let dot = 0;
      for (let c = 0; c < cols; c++) dot += d[off + c] * Y[off + c];
      for (let c = 0; c < cols; c++) g[off + c] += Y[off + c] * (d[off + c] - dot);
    }
  }
  logSumExp(out: Buf, x: Buf, rows: number, cols: number): void {
    const o = a(out), X = a(x);
    for (let r = 0; r < rows; r++) {
      let max = -Infinity;
      for (let c = 0; c < cols; c++) max = Math.max(max, X[r * cols + c]);
      let sum = 0;
      for (let c = 0; c < cols; c++) sum += Math.exp(X[r * cols + c] - max);
      o[r] = max + Math.log(sum);
    }
  }
  logSumExpBackward(dx: Buf, dOut: Buf, x: Buf, lse: Buf, rows: number, cols: number): void {
    const g = a(dx), d = a(dOut), X = a(x), L = a(lse);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) g[r * cols + c] += d[r] * Math.exp(X[r * cols + c] - L[r]);
  }
  moeTopK(weights: Buf, ids: Buf, probs: Buf, rows: number, experts: number, k: number): void {
    if (!(k >= 1 && k <= experts)) throw new RangeError(`js backend: top-${k} routing over ${experts} experts`);
    const W = a(weights), I = a(ids), P = a(probs);
    for (let r = 0; r < rows; r++) {
      // topKOf's values are f32: the float64 probabilities are read back by id.
      const top = topKOf(P, k, r * experts, experts);
      let s = 0;
      for (let j = 0; j < k; j++) s += P[r * experts + top.ids[j]];
      for (let j = 0; j < k; j++) {
        I[r * k + j] = top.ids[j];
        W[r * k + j] = P[r * experts + top.ids[j]] / s;
      }
    }
  }
  moeTopKBackward(dProbs: Buf, dWeights: Buf, probs: Buf, weights: Buf, ids: Buf, rows: number, experts: number, k: number): void {
    const dP = a(dProbs), dW = a(dWeights), P = a(probs), W = a(weights), I = a(ids);
    for (let r = 0; r < rows; r++) {
      let s = 0, dot = 0;
      for (let j = 0; j < k; j++) {
        s += P[r * experts + this.expertId(I[r * k + j], experts)];
        dot += dW[r * k + j] * W[r * k + j];
      }
      for (let j = 0; j < k; j++) dP[r * experts + I[r * k + j]] += (dW[r * k + j] - dot) / s;
    }
  }
  moeCounts(counts: Buf, ids: Buf, n: number, experts: number): void {
    const C = a(counts), I = a(ids);
    for (let i = 0; i < n; i++) C[this.expertId(I[i], experts)]++;
  }
  matmulExperts(out: Buf, x: Buf, w: Buf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
    const O = a(out), X = a(x), Wt = a(w), I = a(ids);
    for (let s = 0; s < rows * k; s++) {
      const e = this.expertId(I[s], experts), xr = xPerSlot ? s : Math.floor(s / k);
      for (let o = 0; o < n; o++) {
        let sum = 0;
        for (let c = 0; c < kin; c++) sum += X[xr * kin + c] * Wt[(e * n + o) * kin + c];
        O[s * n + o] = sum;
      }
    }
  }
  matmulExpertsBackward(dx: Buf | null, dw: Buf | null, dOut: Buf, x: Buf, w: Buf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
    const D = a(dOut), X = a(x), Wt = a(w), I = a(ids);
    const DX = dx ? a(dx) : null, DW = dw ? a(dw) : null;
    for (let s = 0; s < rows * k; s++) {
      const e = this.expertId(I[s], experts), xr = xPerSlot ? s : Math.floor(s / k);
      for (let o = 0; o < n; o++) {
        const g = D[s * n + o];
        for (let c = 0; c < kin; c++) {
          if (DX) DX[xr * kin + c] += g * Wt[(e * n + o) * kin + c];
          if (DW) DW[(e * n + o) * kin + c] += g * X[xr * kin + c];
        }
      }
    }
  }
  matmulExpertsQuantized(out: Buf, x: Buf, w: QBuf, ids: Buf, rows: number, k: number, experts: number, n: number, kin: number, xPerSlot: boolean): void {
    const q = w as JsQBuf;
    if (q.bytes === null) throw new Error("js backend: quantized matrix used after free");
    if (q.rows !== experts * n || q.cols !== kin) throw new RangeError(`js backend: quantized experts are [${q.rows}, ${q.cols}], the call needs [${experts}·${n}, ${kin}]`);
    const rowBytes = quantRowBytes(q.type, kin), I = a(ids), X = a(x);
    // Each slot: its expert's rows as a quantized matrix of their own, through matmulQuantized.
    const xRow = this.alloc(kin), slot = this.alloc(n);
    for (let s = 0; s < rows * k; s++) {
      const e = this.expertId(I[s], experts), xr = xPerSlot ? s : Math.floor(s / k);
      a(xRow).set(X.subarray(xr * kin, (xr + 1) * kin));
      const expert = new JsQBuf(q.type, n, kin, q.bytes.subarray(e * n * rowBytes, (e + 1) * n * rowBytes));
      this.matmulQuantized(slot, xRow, expert, 1, n, kin, false);
      a(out).set(a(slot), s * n);
    }
    this.free(xRow);
    this.free(slot);
  }
  moeCombine(out: Buf, slots: Buf, weights: Buf, rows: number, k: number, dim: number, accumulate: boolean): void {
    const O = a(out), S = a(slots), W = a(weights);
    for (let r = 0; r < rows; r++)
      for (let c = 0; c < dim; c++) {
        let sum = 0;
        for (let j = 0; j < k; j++) sum += W[r * k + j] * S[(r * k + j) * dim + c];
        O[r * dim + c] = accumulate ? O[r * dim + c] + sum : sum;
      }
  }
  moeCombineBackward(dSlots: Buf, dWeights: Buf, dOut: Buf, slots: Buf, weights: Buf, rows: number, k: number, dim: number): void {
    const dS = a(dSlots), dW = a(dWeights), D = a(dOut), S = a(slots), W = a(weights);
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < k; j++) {
        const s = r * k + j;
        let dot = 0;
        for (let c = 0; c < dim; c++) {
          dS[s * dim + c] += W[s] * D[r * dim + c];
          dot += D[r * dim + c] * S[s * dim + c];
        }
        dW[s] += dot;
      }
  }
  /** An expert id read from an ids buffer, checked: a bad id must not index another expert's weights. */
  private expertId(v: number, experts: number): number {
    if (!(Number.isInteger(v) && v >= 0 && v < experts)) throw new RangeError(`js backend: expert id ${v} out of range [0, ${experts})`);
    return v;
  }

  adamw(param: Buf, grad: Buf, m: Buf, v: Buf, lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, step: number): void {
    const P = a(param), G = a(grad), M = a(m), V = a(v);
    const bc1 = 1 - Math.pow(beta1, step), bc2Sqrt = Math.sqrt(1 - Math.pow(beta2, step));
    const stepSize = lr / bc1, decay = 1 - lr * weightDecay;
    for (let i = 0; i < P.length; i++) {
      P[i] *= decay;
      M[i] = beta1 * M[i] + (1 - beta1) * G[i];
      V[i] = beta2 * V[i] + (1 - beta2) * G[i] * G[i];
      P[i] -= (stepSize * M[i]) / (Math.sqrt(V[i]) / bc2Sqrt + eps);
    }
  }
}

// ---- distillation helpers (the same arithmetic as assembly/kernels.ts) ----------------------------

function lseRow(x: FloatArray, o: number, n: number, scale: number): number {
  let mx = -Infinity;
  for (let j = 0; j < n; j++) mx = Math.max(mx, x[o + j] * scale);
  let z = 0;
  for (let j = 0; j < n; j++) z += Math.exp(x[o + j] * scale - mx);
  return mx + Math.log(z);
}

function logAddExp(x: number, y: number): number {
  const m = Math.max(x, y);
  return m === -Infinity ? m : m + Math.log(Math.exp(x - m) + Math.exp(y - m));
}

/** One outcome's share of the divergence, for student and teacher log-probabilities lq, lp. */
function kdTerm(kd: KdParams, lq: number, lp: number): number {
  if (kd.kind === 0) return lp === -Infinity ? 0 : Math.exp(lp) * (lp - lq);
  if (kd.kind === 1) return lq === -Infinity ? 0 : Math.exp(lq) * (lq - lp);
  const b = kd.beta, lm = logAddExp(lq + Math.log(1 - b), lp + Math.log(b));
  return (lp === -Infinity ? 0 : b * Math.exp(lp) * (lp - lm)) + (lq === -Infinity ? 0 : (1 - b) * Math.exp(lq) * (lq - lm));
}

/** ∂(that share)/∂lq: −p (forward KL), q·(lq − lp + 1) (reverse KL), (1−β)·q·(lq − lm) (JSD). */
function kdGrad(kd: KdParams, lq: number, lp: number): number {
  if (kd.kind === 0) return lp === -Infinity ? 0 : -Math.exp(lp);
  if (lq === -Infinity) return 0;
  if (kd.kind === 1) return Math.exp(lq) * (lq - lp + 1);
  const b = kd.beta, lm = logAddExp(lq + Math.log(1 - b), lp + Math.log(b));
  return (1 - b) * Math.exp(lq) * (lq - lm);
}

const kdWeightCe = (t: number, kd: KdParams): number => (t >= 0 ? kd.alpha : 0);
const kdWeightKd = (t: number, kd: KdParams): number => (t >= 0 ? 1 - kd.alpha : 1) * kd.temperature * kd.temperature;

function kdTarget(targets: Int32Array, r: number, vocab: number): number {
  const t = targets[r];
  if (!(t >= -2 && t < vocab)) throw new Error(`target ${t} out of range [-2, ${vocab})`);
  return t;
}

function kdIds(ids: Int32Array, r: number, k: number, vocab: number): Int32Array {
  const row = ids.subarray(r * k, r * k + k);
  for (const id of row) if (!(id >= 0 && id < vocab)) throw new Error(`teacher token id ${id} out of range [0, ${vocab})`);
  return row;
}

/** log of the teacher's residual mass max(1 − Σ top-k p, 1e-30); −∞ when the top-k is the whole vocabulary. */
function kdResidualTeacher(lp: FloatArray, o: number, k: number, vocab: number): number {
  if (k >= vocab) return -Infinity;
  let sp = 0;
  for (let i = 0; i < k; i++) sp += Math.exp(lp[o + i]);
  return Math.log(Math.max(1 - sp, 1e-30));
}
