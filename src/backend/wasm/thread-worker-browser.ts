// Entry point of a Web Worker of the threaded wasm backend (started by workers-browser.ts with
// `{ type: "module" }`): the first message is the WorkerInit.
import { kernelImports, type Kernels } from "./wasm-backend.js";
import { serve, type WorkerInit } from "./thread-worker.js";

const scope = globalThis as unknown as {
  postMessage(message: unknown): void;
  addEventListener(type: "message", listener: (e: { data: WorkerInit }) => void, options: { once: boolean }): void;
};
scope.addEventListener("message", (e) => {
  const instance = new WebAssembly.Instance(e.data.module, kernelImports(e.data.memory));
  scope.postMessage("ready");
  serve(instance.exports as unknown as Kernels, e.data);
}, { once: true });
