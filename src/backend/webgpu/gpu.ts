// The WebGPU core under the backend: buffers, command batching and kernel dispatch. Kernels only
// record commands; they reach the GPU in one submit when a value is read back (or when many have
// piled up), so a forward pass is one submit and one readback. Everything the host sends along
// with a command (kernel parameters, token ids, written numbers) goes into rings that are
// uploaded just before that submit, which keeps it in program order with the commands.

/** WebGPU's usage and map-mode flags, by value (no globals needed in Node). */
export const Usage = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80 } as const;
const MAP_READ = 0x1;

/** Bytes of kernel parameters per dispatch: 64 four-byte scalars (a uniform slot). */
const PARAM_SLOT = 256;
/** Dispatches recorded before a submit is forced (keeps the GPU busy on long graphs). */
const MAX_PENDING = 1024;
/** Threads per workgroup of the one-dimensional kernels. */
export const WG = 64;

/** A buffer of f32 numbers (or raw words) on the GPU. */
export class GpuBuf {
  freed = false;
  constructor(
    readonly buffer: GPUBuffer,
    /** Numbers (4-byte words) the caller asked for; the buffer may be larger (size classes). */
    readonly length: number,
  ) {}
}

/** Kernel parameters: four-byte scalars in the order of the kernel's WGSL `Params` struct. */
export class Params {
  readonly view: DataView;
  private n = 0;
  constructor(readonly bytes = new Uint8Array(PARAM_SLOT)) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  u32(...vs: number[]): this {
    for (const v of vs) this.view.setUint32(4 * this.n++, v >>> 0, true);
    return this;
  }
  i32(...vs: number[]): this {
    for (const v of vs) this.view.setInt32(4 * this.n++, v | 0, true);
    return this;
  }
  f32(...vs: number[]): this {
    for (const v of vs) this.view.setFloat32(4 * this.n++, v, true);
    return this;
  }
}

/** A binding of a dispatch: a whole buffer, or a range of one (byte offset and size). */
export type Binding = GPUBuffer | GpuBuf | { buffer: GPUBuffer; offset: number; size: number };

/** Host bytes that travel with the batch, in a ring uploaded before its submit. */
class UploadRing {
  buffer: GPUBuffer;
  private host: Uint8Array;
  used = 0;
  constructor(
    private readonly device: GPUDevice,
    private readonly usage: number,
    private size: number,
    private readonly align: number,
  ) {
    this.buffer = device.createBuffer({ size, usage: usage | Usage.COPY_DST });
    this.host = new Uint8Array(size);
  }
  /** Room for `bytes` more? */
  fits(bytes: number): boolean {
    return alignUp(this.used, this.align) + bytes <= this.size;
  }
  /** Grow (when empty) so that one item of `bytes` fits. */
  ensure(bytes: number): void {
    if (bytes <= this.size) return;
    this.buffer.destroy();
    this.size = alignUp(Math.max(bytes, 2 * this.size), this.align);
    this.buffer = this.device.createBuffer({ size: this.size, usage: this.usage | Usage.COPY_DST });
    this.host = new Uint8Array(this.size);
  }
  /** Copy `data` in; its byte offset in the ring. */
  put(data: Uint8Array): number {
    const at = alignUp(this.used, this.align);
    this.host.set(data, at);
    this.used = at + data.byteLength;
    return at;
  }
  /** The room for `bytes` bytes to be written in place; its byte offset in the ring. */
  take(bytes: number): { at: number; bytes: Uint8Array } {
    const at = alignUp(this.used, this.align);
    this.used = at + bytes;
    return { at, bytes: this.host.subarray(at, at + bytes) };
  }
  upload(queue: GPUQueue): void {
    if (this.used > 0) queue.writeBuffer(this.buffer, 0, this.host as Uint8Array<ArrayBuffer>, 0, alignUp(this.used, 4));
    this.used = 0;
  }
}

const alignUp = (x: number, a: number): number => Math.ceil(x / a) * a;

/** Byte size of a pooled buffer holding `bytes`: multiples of 256 B up to 64 KiB, then four classes per power of two. */
function sizeClass(bytes: number): number {
  if (bytes <= 65536) return alignUp(Math.max(bytes, 16), 256);
  const p = 2 ** Math.floor(Math.log2(bytes)), step = p / 4;
  return alignUp(bytes, step);
}

export class Gpu {
  /** Why the device is unusable (lost, or an error the GPU reported), or null. */
  private failure: string | null = null;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private pending = 0;
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly pool = new Map<number, GPUBuffer[]>();
  /** Mappable buffers of readbacks, by size class: a decode step reads one back per token. */
  private readonly staging = new Map<number, GPUBuffer[]>();
  private readonly params: UploadRing;
  private readonly uploads: UploadRing;
  /** Buffers to destroy once the batch that uses them is submitted. */
  private retired: GPUBuffer[] = [];
  /** Bytes copied host → device and device → host, for the benches. */
  readonly traffic = { upload: 0, download: 0 };

  constructor(
    readonly device: GPUDevice,
    /** What the adapter says it is (vendor, architecture, description), for headers and errors. */
    readonly adapterName: string,
  ) {
    const lim = device.limits;
    this.params = new UploadRing(device, Usage.UNIFORM, PARAM_SLOT * 512, Math.max(PARAM_SLOT, lim.minUniformBufferOffsetAlignment));
    this.uploads = new UploadRing(device, Usage.STORAGE | Usage.COPY_SRC, 1 << 20, Math.max(256, lim.minStorageBufferOffsetAlignment));
    void device.lost.then((info) => {
      this.failure ??= `the GPU device was lost (${info.reason}${info.message ? `: ${info.message}` : ""}); create a new backend`;
    });
    device.addEventListener("uncapturederror", (e) => {
      this.failure ??= `the GPU reported an error: ${(e as GPUUncapturedErrorEvent).error.message.replace(/\s+/g, " ").trim()}`;
    });
  }

  /** Largest buffer a kernel can bind. */
  get maxBinding(): number {
    return Math.min(this.device.limits.maxStorageBufferBindingSize, this.device.limits.maxBufferSize);
  }

  check(): void {
    if (this.failure !== null) throw new Error(`webgpu backend: ${this.failure}`);
  }

  // ---- buffers --------------------------------------------------------------------------------

  /** A zero-filled storage buffer of at least `bytes` bytes. */
  buffer(bytes: number, what = "buffer"): GPUBuffer {
    this.check();
    const size = sizeClass(bytes);
    if (bytes > this.maxBinding)
      throw new RangeError(
        `webgpu backend: a ${what} of ${(bytes / 2 ** 20).toFixed(1)} MiB exceeds this adapter's largest storage binding ` +
          `(${(this.maxBinding / 2 ** 20).toFixed(0)} MiB, ${this.adapterName}); use the wasm backend or place fewer layers on the GPU (--gpu-layers)`,
      );
    const free = this.pool.get(size);
    const reused = free?.pop();
    if (reused) {
      this.commands().clearBuffer(reused);
      return reused;
    }
    // The class rounding may overshoot the limit where `bytes` itself does not.
    return this.device.createBuffer({ size: size <= this.maxBinding ? size : alignUp(bytes, 4), usage: Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST });
  }

  /** Give a buffer back to the pool: later commands may reuse it, which keeps program order. */
  release(b: GPUBuffer): void {
    const list = this.pool.get(b.size);
    if (list) list.push(b);
    else this.pool.set(b.size, [b]);
  }

  /** Copy host bytes into `dst` at byte `offset`, in program order with the recorded commands. */
  writeBytes(dst: GPUBuffer, offset: number, data: Uint8Array): void {
    this.check();
    if (data.byteLength === 0) return;
    this.traffic.upload += data.byteLength;
    if (data.byteLength % 4 !== 0 || offset % 4 !== 0) throw new RangeError("webgpu backend: writes must be whole 4-byte words");
    if (this.encoder === null) {
      // Nothing recorded: the queue's own write is already in order.
      this.device.queue.writeBuffer(dst, offset, data as Uint8Array<ArrayBuffer>);
      return;
    }
    if (data.byteLength > 1 << 22) {
      this.flush();
      this.device.queue.writeBuffer(dst, offset, data as Uint8Array<ArrayBuffer>);
      return;
    }
    if (!this.uploads.fits(data.byteLength)) {
      this.flush();
      this.uploads.ensure(data.byteLength);
    }
    const at = this.uploads.put(data);
    this.commands().copyBufferToBuffer(this.uploads.buffer, at, dst, offset, data.byteLength);
  }

  /**
   * Host words (token ids, targets) as a read-only binding for the next dispatch: placed in the
   * upload ring, no buffer of their own.
   */
  hostWords(data: Int32Array | Uint32Array | Float32Array): Binding {
    this.check();
    const bytes = Math.max(4, data.byteLength);
    if (!this.uploads.fits(bytes)) {
      this.flush();
      this.uploads.ensure(bytes);
    }
    const room = this.uploads.take(bytes);
    room.bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    this.traffic.upload += data.byteLength;
    return { buffer: this.uploads.buffer, offset: room.at, size: alignUp(bytes, 4) };
  }

  /** Copy `bytes` bytes between buffers (distinct, or non-overlapping ranges of one via a temporary). */
  copyBytes(dst: GPUBuffer, dstOffset: number, src: GPUBuffer, srcOffset: number, bytes: number): void {
    this.check();
    if (bytes === 0) return;
    const enc = this.commands();
    if (dst !== src) {
      enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
      return;
    }
    // WebGPU copies never read and write one buffer: go through a temporary (memmove semantics).
    const tmp = this.device.createBuffer({ size: alignUp(bytes, 4), usage: Usage.COPY_SRC | Usage.COPY_DST });
    enc.copyBufferToBuffer(src, srcOffset, tmp, 0, bytes);
    enc.copyBufferToBuffer(tmp, 0, dst, dstOffset, bytes);
    this.retired.push(tmp);
  }

  /** Read `bytes` bytes at byte `offset` of `src` back to the host (submits what is recorded). */
  async readBytes(src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    this.check();
    if (bytes === 0) return new ArrayBuffer(0);
    const size = sizeClass(bytes);
    const staging = this.staging.get(size)?.pop() ?? this.device.createBuffer({ size, usage: MAP_READ | Usage.COPY_DST });
    this.commands().copyBufferToBuffer(src, offset, staging, 0, alignUp(bytes, 4));
    this.flush();
    this.traffic.download += bytes;
    try {
      await staging.mapAsync(MAP_READ);
    } catch (e) {
      this.check(); // a lost device explains a failed map better than the map error does
      throw new Error(`webgpu backend: reading back ${bytes} bytes failed: ${(e as Error).message}`);
    }
    this.check();
    const out = staging.getMappedRange(0, alignUp(bytes, 4)).slice(0, bytes);
    staging.unmap();
    const free = this.staging.get(size);
    if (free) free.push(staging);
    else this.staging.set(size, [staging]);
    return out;
  }

  // ---- commands -------------------------------------------------------------------------------

  /** The encoder outside any compute pass (for copies and clears). */
  private commands(): GPUCommandEncoder {
    if (this.pass !== null) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (this.pass === null) {
      this.encoder ??= this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    return this.pass;
  }

  /** A compute pipeline for WGSL `code` (entry point `main`), compiled once. */
  pipeline(code: string): GPUComputePipeline {
    let p = this.pipelines.get(code);
    if (p === undefined) {
      const module = this.device.createShaderModule({ code });
      p = this.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
      this.pipelines.set(code, p);
    }
    return p;
  }

  /**
   * Record one dispatch of `code`: binding 0 is the uniform `params`, bindings 1… are `bindings`
   * in order (every one must be used by the shader). `groups`: workgroup counts.
   */
  dispatch(code: string, params: Params | null, bindings: Binding[], groups: readonly [number, number?, number?]): void {
    this.check();
    const [x, y = 1, z = 1] = groups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) throw new RangeError(`webgpu backend: ${x}×${y}×${z} workgroups exceed the limit of ${max} per dimension`);
    if (!this.params.fits(PARAM_SLOT)) this.flush();
    const pipeline = this.pipeline(code);
    const entries: GPUBindGroupEntry[] = [];
    if (params !== null) {
      const at = this.params.put(params.bytes);
      entries.push({ binding: 0, resource: { buffer: this.params.buffer, offset: at, size: PARAM_SLOT } });
    }
    bindings.forEach((b, i) => {
      const resource = b instanceof GpuBuf ? { buffer: b.buffer } : "offset" in b ? { buffer: b.buffer, offset: b.offset, size: b.size } : { buffer: b };
      entries.push({ binding: i + 1, resource });
    });
    const group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const pass = this.computePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(x, y, z);
    if (++this.pending >= MAX_PENDING) this.flush();
  }

  /** Submit everything recorded (with the rings' uploads first). */
  flush(): void {
    if (this.encoder === null) return;
    if (this.pass !== null) {
      this.pass.end();
      this.pass = null;
    }
    const queue = this.device.queue;
    this.params.upload(queue);
    this.uploads.upload(queue);
    queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.pending = 0;
    for (const b of this.retired) b.destroy();
    this.retired = [];
  }

  /** Wait until the GPU has run everything submitted so far. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }

  destroy(): void {
    this.pass?.end();
    this.pass = null;
    this.encoder = null;
    for (const pool of [this.pool, this.staging]) {
      for (const list of pool.values()) for (const b of list) b.destroy();
      pool.clear();
    }
    this.failure ??= "the backend was disposed";
    this.device.destroy();
  }
}

/**
 * Workgroup counts covering `n` items at `perGroup` items per workgroup: x up to the per-dimension
 * limit, then rows of y. A kernel's item index is `gid.x + gid.y · (num_workgroups.x · WG)` (see
 * `linearIndex` in kernels/common.ts).
 */
export function groups1d(gpu: Gpu, n: number, perGroup = WG): [number, number] {
  const need = Math.ceil(n / perGroup), max = gpu.device.limits.maxComputeWorkgroupsPerDimension;
  if (need <= max) return [Math.max(need, 1), 1];
  const y = Math.ceil(need / max);
  return [Math.ceil(need / y), y];
}
