// The package root as Node sees it: the whole library plus the helpers that touch files
// (loadTokenizer, loadModel, ...). Browsers and bundlers get index.ts alone.
export * from "./index.js";
export * from "./node.js";
