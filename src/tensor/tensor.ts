// Tensor and reverse-mode autograd. A tensor is a shape plus a backend buffer. Ops that need
// gradients record one graph node each (a coarse, fused op such as attention or RMSNorm), with an
// explicit backward closure that accumulates into the parents' gradient buffers.
//
// Memory: buffers created inside `scope(fn)` are freed when the scope ends, except the tensors
// `fn` returns. Parameters are created outside any scope and live until disposed.
import type { Backend, Buf, FloatArray } from "../backend/backend.js";

export class Tensor {
  grad: Buf | null = null;
  /** Parents in the graph and the closure that pushes this tensor's gradient to them. */
  parents: Tensor[] = [];
  backwardFn: (() => void) | null = null;
  private disposed = false;

  constructor(
    readonly backend: Backend,
    readonly shape: readonly number[],
    readonly data: Buf,
    public requiresGrad = false,
  ) {
    const n = shape.reduce((x, y) => x * y, 1);
    if (n !== data.length) throw new Error(`tensor shape [${shape.join(", ")}] needs ${n} numbers, buffer has ${data.length}`);
    trackInScope(this);
  }

  get size(): number {
    return this.data.length;
  }

  static zeros(backend: Backend, shape: readonly number[], requiresGrad = false): Tensor {
    return new Tensor(backend, shape, backend.alloc(shape.reduce((x, y) => x * y, 1)), requiresGrad);
  }

  static from(backend: Backend, shape: readonly number[], values: ArrayLike<number>, requiresGrad = false): Tensor {
    const t = Tensor.zeros(backend, shape, requiresGrad);
    backend.write(t.data, values);
    return t;
  }

  /** The gradient buffer, allocated (zeroed) on first use. */
  ensureGrad(): Buf {
    if (this.grad === null) this.grad = this.backend.alloc(this.size);
    return this.grad;
  }

  zeroGrad(): void {
    if (this.grad !== null) this.backend.fill(this.grad, 0);
  }

  /** The numbers on the host (asynchronous: a GPU backend returns them asynchronously). */
  toArray(): Promise<FloatArray> {
    return this.backend.read(this.data);
  }

  gradArray(): Promise<FloatArray | null> {
    return this.grad === null ? Promise.resolve(null) : this.backend.read(this.grad);
  }

  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() needs a single number, tensor has ${this.size}`);
    return (await this.backend.read(this.data))[0];
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.backend.free(this.data);
    if (this.grad !== null) this.backend.free(this.grad);
    this.grad = null;
    this.parents = [];
    this.backwardFn = null;
  }
}

// ---- graph recording ----------------------------------------------------------------------------

let gradEnabled = true;

/** Run `fn` without recording a graph (inference). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Whether ops record a graph now (false inside noGrad). */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/**
 * Make `out` a graph node over `parents` if any parent needs a gradient. `backward` reads
 * `out.grad` and accumulates into the parents' gradients (`ensureGrad()`).
 */
export function record(out: Tensor, parents: Tensor[], backward: () => void): Tensor {
  if (gradEnabled && parents.some((p) => p.requiresGrad)) {
    out.requiresGrad = true;
    out.parents = parents;
    out.backwardFn = backward;
  }
  return out;
}

/** Back-propagate from a scalar: d(loss)/d(loss) = 1, then every node in reverse topological order. */
export function backward(loss: Tensor): void {
  if (loss.size !== 1) throw new Error("backward() needs a scalar loss");
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  // Iterative DFS: deep models would overflow the stack with recursion.
  const stack: [Tensor, number][] = [[loss, 0]];
  seen.add(loss);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    if (i < t.parents.length) {
      top[1]++;
      const p = t.parents[i];
      if (!seen.has(p) && p.requiresGrad) {
        seen.add(p);
        stack.push([p, 0]);
      }
    } else {
      stack.pop();
      order.push(t);
    }
  }
  loss.backend.fill(loss.ensureGrad(), 1);
  for (let i = order.length - 1; i >= 0; i--) {
    const t = order[i];
    if (t.backwardFn !== null && t.grad !== null) t.backwardFn();
  }
}

// ---- scopes -------------------------------------------------------------------------------------

type Disposable = { dispose(): void };
const scopes: Set<Disposable>[] = [];

function trackInScope(t: Disposable): void {
  if (scopes.length > 0) scopes[scopes.length - 1].add(t);
}

/** Register a raw buffer (saved activations) to be freed with the current scope. */
export function trackBuf(backend: Backend, buf: Buf): Buf {
  trackInScope({ dispose: () => backend.free(buf) });
  return buf;
}

/**
 * Run `fn`; free every tensor and buffer created inside it except those in the returned value
 * (a Tensor, or an array / plain object of Tensors), which move to the enclosing scope.
 */
export function scope<T>(fn: () => T): T {
  const mine = new Set<Disposable>();
  scopes.push(mine);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    for (const d of mine) d.dispose();
    throw e;
  } finally {
    scopes.pop();
  }
  const keep = new Set<Tensor>();
  collectTensors(result, keep);
  for (const d of mine) {
    if (d instanceof Tensor && keep.has(d)) trackInScope(d);
    else d.dispose();
  }
  return result;
}

/** Run `fn` outside every scope: what it creates lives until disposed (state a model owns). */
export function unscoped<T>(fn: () => T): T {
  const saved = scopes.splice(0);
  try {
    return fn();
  } finally {
    scopes.push(...saved);
  }
}

function collectTensors(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) for (const x of v) collectTensors(x, out);
  else if (v !== null && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype)
    for (const x of Object.values(v)) collectTensors(x, out);
}
