// Node adapter: kernel workers as worker_threads. They are unref'd, so an idle pool never keeps
// the process alive (a worker blocked in Atomics.wait would otherwise hang it at exit).
import { Worker } from "node:worker_threads";
import type { SpawnWorker } from "./workers.js";

export const spawnNodeWorker: SpawnWorker = (init) =>
  new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./thread-worker-node.js", import.meta.url), { workerData: init });
    worker.once("message", () => {
      worker.off("error", reject);
      worker.unref();
      resolve({ terminate: () => void worker.terminate() });
    });
    worker.once("error", reject);
  });
