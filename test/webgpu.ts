// The WebGPU backend for tests: on these machines a CPU Vulkan driver (Chromium's SwiftShader)
// stands in for a GPU. Without an adapter the tests skip, saying why.
import { existsSync } from "node:fs";
import type { WebGpuBackend } from "../src/backend/webgpu/webgpu-backend.js";

const SWIFTSHADER = "/usr/lib/chromium/vk_swiftshader_icd.json";

let cached: Promise<WebGpuBackend | string> | null = null;

/** A shared WebGPU backend, or the reason there is none (the tests then skip with it). */
export function webgpuBackend(): Promise<WebGpuBackend | string> {
  cached ??= (async () => {
    // Dawn would pick Debian's lavapipe, which it rejects; SwiftShader works (../shared/NOTES.md).
    if (process.env.VK_ICD_FILENAMES === undefined && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;
    try {
      const { createWebGpuBackend } = await import("../src/backend/webgpu/device.js");
      return await createWebGpuBackend();
    } catch (e) {
      return `no WebGPU adapter (${(e as Error).message})`;
    }
  })();
  return cached;
}
