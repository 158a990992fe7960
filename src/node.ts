// Node-only helpers: models, tokenizers and checkpoints on disk.
export { loadModel, loadTokenizer, loadTokenizerFile, writeCheckpoint, type LoadedModel, type LoadModelOptions } from "./io/model-files-node.js";
export { readBytes, writeFileAtomic, commitFiles, recoverCheckpointDir } from "./io/fs-node.js";
export { FileSource } from "./io/byte-source-node.js";
export { createServer, type BonsaiServer, type ServeOptions } from "./serve/server-node.js";
export { createAppRoutes, type AppRoutesOptions, type AppRouteHandler } from "./serve/app-routes-node.js";
export { inputLines, TextSink, type LineInput } from "./data/record-files-node.js";
export { openRecordLog, RecordLog, type ExistingRecord, type OpenedOutput } from "./data/synth/output-node.js";
