// Entry point of a Node worker thread of the threaded wasm backend (started by workers-node.ts).
import { parentPort, workerData } from "node:worker_threads";
import { kernelImports, type Kernels } from "./wasm-backend.js";
import { serve, type WorkerInit } from "./thread-worker.js";

const init = workerData as WorkerInit;
const instance = new WebAssembly.Instance(init.module, kernelImports(init.memory));
parentPort!.postMessage("ready");
serve(instance.exports as unknown as Kernels, init);
