// Node-only helpers: models, tokenizers and checkpoints on disk.
export { loadModel, loadTokenizer, loadTokenizerFile, writeCheckpoint, type LoadedModel } from "./io/model-files-node.js";
export { readBytes, writeFileAtomic, commitFiles, recoverCheckpointDir } from "./io/fs-node.js";
export { FileSource } from "./io/byte-source-node.js";
