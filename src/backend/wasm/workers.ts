// How the threaded wasm backend starts its workers: an environment adapter (workers-node.ts,
// workers-browser.ts) behind one small interface.
import type { WorkerInit } from "./thread-worker.js";

export interface WorkerHandle {
  /** Stop the thread (after it was asked to quit, or to reclaim a stuck one). */
  terminate(): void;
}

/** Start a worker serving kernels per `init`; resolves once it has instantiated the module. */
export type SpawnWorker = (init: WorkerInit) => Promise<WorkerHandle>;

/** The adapter for the current environment: Web Workers where there are any, else Node's worker_threads. */
export async function defaultSpawner(): Promise<SpawnWorker> {
  // Node has no global Worker; browsers (and Deno, Bun) do.
  if (typeof Worker === "function") return (await import("./workers-browser.js")).spawnBrowserWorker;
  return (await import("./workers-node.js")).spawnNodeWorker;
}
