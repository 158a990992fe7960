// Browser adapter: kernel workers as module Web Workers. Sharing wasm memory needs a
// cross-origin-isolated page (COOP/COEP headers), as SharedArrayBuffer does.
import type { SpawnWorker } from "./workers.js";

export const spawnBrowserWorker: SpawnWorker = (init) =>
  new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./thread-worker-browser.js", import.meta.url), { type: "module" });
    worker.onmessage = () => resolve({ terminate: () => worker.terminate() });
    worker.onerror = (e) => reject(new Error(`wasm backend: worker failed to start (${e.message})`));
    worker.postMessage(init);
  });
