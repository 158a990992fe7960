// Finding a GPU: `navigator.gpu` where the runtime has it (browsers, Deno), else the Node binding
// of Dawn (npm `webgpu`, an optional peer dependency, loaded only when asked for). The device gets
// the adapter's largest buffer limits, so a model fits if the hardware can hold it.
import { Gpu } from "./gpu.js";
import { WebGpuBackend } from "./webgpu-backend.js";

export interface WebGpuOptions {
  /** "high-performance" (default) or "low-power": which adapter to ask for where there are several. */
  powerPreference?: GPUPowerPreference;
}

/** How to get a GPU in Node, when neither navigator.gpu nor the package is there. */
const INSTALL_HINT =
  "install the optional package `webgpu` (npm i webgpu@0.6.2) and a Vulkan driver (Debian: apt-get install libvulkan1 mesa-vulkan-drivers, " +
  "or Chromium's SwiftShader: apt-get install chromium, then VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json)";

async function gpuEntryPoint(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  return (await import("./gpu-node.js")).nodeGpu(INSTALL_HINT);
}

/** One line naming the adapter: vendor, architecture, device/description where given. */
export function describeAdapter(info: GPUAdapterInfo | undefined): string {
  if (!info) return "unknown adapter";
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s) => s !== undefined && s !== "");
  return parts.length > 0 ? [...new Set(parts)].join(" ") : "unknown adapter";
}

export async function createWebGpuBackend(opts: WebGpuOptions = {}): Promise<WebGpuBackend> {
  const gpu = await gpuEntryPoint();
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? "high-performance" });
  if (!adapter) throw new Error(`webgpu backend: no GPU adapter found; ${INSTALL_HINT}`);
  const lim = adapter.limits;
  const device = await adapter.requestDevice({
    requiredLimits: {
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
      maxBufferSize: lim.maxBufferSize,
      maxStorageBuffersPerShaderStage: Math.min(lim.maxStorageBuffersPerShaderStage, 10),
      maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: lim.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: lim.maxComputeWorkgroupSizeX,
    },
  });
  return new WebGpuBackend(new Gpu(device, describeAdapter(adapter.info)));
}
