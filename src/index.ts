// The library's public surface. Everything exported here also runs in a browser; Node-only
// helpers (files, checkpoints on disk) are exported from "bonsai-lm/node".
export type { Backend, Buf, FloatArray, QBuf, QuantType } from "./backend/backend.js";
export { createBackend, backendNames, type BackendName } from "./backend/index.js";
export { JsBackend } from "./backend/js/js-backend.js";

export { Tensor, backward, noGrad, scope } from "./tensor/tensor.js";
export * as ops from "./tensor/ops.js";
export { QuantizedWeight } from "./tensor/quantized-weight.js";

export { type LlamaConfig, defaultIntermediateSize, normalizeConfig, validateConfig, parameterNames, parameterShape, toHfConfigJson } from "./nn/config.js";
export { Llama, type ForwardOptions, type Attend } from "./nn/llama.js";
export { type Weight, applyWeight, applyWeights } from "./nn/weight.js";
export { type FuseOptions, type ModelWeights, type LayerWeights } from "./nn/fusion.js";

export { Trainer, languageModelling, type Objective, type BatchSource, type TrainOptions, type TrainCallbacks, type StepEvent, type EvalEvent } from "./train/trainer.js";
export { AdamW, type AdamWOptions } from "./train/adamw.js";
export { learningRate, type LrSchedule } from "./train/schedule.js";
export { randomBatch, sequentialBatches, splitTrainVal, sampleBatch, type Batch } from "./data/batches.js";
export { splitDocuments, tokenizeDocuments, splitSamples, concatSamples, type Document, type Sample, type DocumentFormat } from "./data/documents.js";
export { readRecords, formatRecord, MalformedRecordError, type DataRecord, type ReadRecordsOptions } from "./data/records.js";
export { filterText, FILTER_RULES, FILTER_DEFAULTS, type FilterRule, type FilterOptions } from "./data/filters/filter.js";
export { languageCheck, LANGUAGES, type LanguageOptions } from "./data/filters/language.js";
export type { RuleOutcome, Removal } from "./data/filters/outcome.js";
export { normalizeText } from "./data/dedup/normalize.js";
export { exactHash, ExactIndex } from "./data/dedup/exact.js";
export { minhashSignature, estimatedJaccard, MinHashIndex, MINHASH_DEFAULTS, type MinHashOptions } from "./data/dedup/minhash.js";
export { UnionFind } from "./data/dedup/union-find.js";
export { murmur3x86_32, murmur3x86_128 } from "./data/dedup/hash.js";
export { HashedFeaturizer, featureTokens, defaultHashedFeatureSpec, type HashedFeatureSpec, type SparseVector } from "./data/classifier/features.js";
export { EmbeddingFeaturizer, type EmbeddingFeatureSpec } from "./data/classifier/embeddings.js";
export { QualityClassifier, ClassifierFileError, describeFeatures, type FeatureSpec, type ClassifierPrediction } from "./data/classifier/classifier.js";
export { trainClassifier, type TrainClassifierOptions, type ClassifierReport } from "./data/classifier/train.js";
export { trainLinear, predictLinear, type LinearHeads } from "./data/classifier/linear.js";
export { binaryMetrics, spearman, meanAbsoluteError, type BinaryMetrics } from "./data/classifier/metrics.js";
export { labelDocument, parseLabel, renderRubric, FINEWEB_EDU_RUBRIC, type LabelOptions, type LabelResult } from "./data/classifier/label.js";
export { keepRankRange, pruneRange, type PruneSide } from "./data/rank-select.js";
export {
  ModelTeacher, EndpointTeacher, TokenRateLimiter, TeacherError, endpointUrl, retryAfterMs,
  type Teacher, type TeacherPrompt, type CompleteOptions, type TeacherCompletion, type TeacherUsage, type ModelTeacherOptions, type EndpointTeacherOptions,
} from "./data/teacher.js";
export {
  synthesize, samplingSeed, teacherPrompt, OutputDedup, minhashNearDuplicates,
  type SynthOptions, type SynthRecord, type SynthSummary, type SynthEvent, type NearDuplicateIndex,
} from "./data/synth/synthesize.js";
export {
  parseTemplate as parseSynthTemplate, makeRecipe, drawPrompt, TemplateError,
  type Template as SynthTemplate, type Recipe, type Ingredients, type DrawnPrompt, type Feature,
} from "./data/synth/template.js";
export { parseWordLists, formatWordLists, defaultWordLists, type WordLists } from "./data/synth/words.js";
export { BUILTIN_TEMPLATES, TINYSTORIES_TEMPLATE, STORY_OPENING_TEMPLATE, TEXTBOOK_EXERCISE_TEMPLATE, TEXTBOOK_TEMPLATE } from "./data/synth/templates.js";
export {
  Curriculum, competence, curriculumOptions, curriculumMetrics, sampleLosses, sampleWeightedLoss,
  type CurriculumOptions, type CurriculumStats, type CurriculumState, type PacingName,
} from "./train/curriculum.js";
export { applyQat, parseQatSetting, qatTensorNames, qatFile, readQatFile, type QatSetting } from "./train/qat.js";
export { onTheFlyObjective, cachedTeacherObjective, sampleContinuations, checkSameVocab } from "./train/distill.js";

export type { Tokenizer, EncodeOptions } from "./tokenizer/tokenizer.js";
export { CharTokenizer } from "./tokenizer/char-tokenizer.js";
export { Llama2cTokenizer, parseLlama2cTokenizer } from "./tokenizer/llama2c-tokenizer.js";
export { tokenizerFromJSON } from "./tokenizer/load.js";
export { SpmTokenizer, TokenType } from "./tokenizer/spm.js";
export { ByteBpeTokenizer, PRE_TOKENIZER_NAMES } from "./tokenizer/byte-bpe.js";
export { tokenizerFromHfJson, tokenizerToHfJson } from "./tokenizer/hf-tokenizer-json.js";
export { tokenizerFromGgufMetadata, tokenizerToGgufMetadata } from "./tokenizer/gguf-vocab.js";
export { trainTokenizer } from "./tokenizer/train-bpe.js";

export { generateTokens, emptyStats, type GenerateOptions, type GenerationStats } from "./runtime/generate.js";
export { sampleToken, argmax, applyPenalties, filterCandidates, candidateProbs, finalProbs, drawFrom, type SampleOptions } from "./runtime/sample.js";
export {
  speculativeTokens, checkDraftVocabulary, emptySpeculativeStats, summarizeSpeculative, DEFAULT_ADAPTIVE_RULE,
  type SpeculativeConfig, type SpeculativeStats, type SpeculativeRound, type AdaptiveRule, type DecoderModel, type DecoderSession,
} from "./runtime/speculative.js";
export { ngramDraft, type NgramOptions } from "./runtime/ngram-draft.js";
export { Session, type SessionOptions, type PrefillOptions } from "./runtime/session.js";
export { BatchEngine, QueueFullError, type BatchEngineOptions, type BatchRequest, type BatchStream, type TokenEvent, type FinishReason } from "./runtime/batch.js";
export { stream, promptIds, type StreamOptions, type StreamPiece } from "./runtime/stream.js";
export { TextStream } from "./runtime/text-stream.js";
export {
  renderChat, DEFAULT_CHAT_TEMPLATE, checkMessages, chatStops, chatPromptIds, specialTokenId, specialTokenTexts, ChatInputError, ChatTemplateError,
  type ChatMessage, type RenderChatOptions, type ChatStops,
} from "./runtime/chat.js";
export { chatTemplateFromGguf, chatTemplateFromTokenizerConfig, chatTemplateOfDirectory, GGUF_CHAT_TEMPLATE_KEY, CHAT_TEMPLATE_FILE } from "./io/chat-template-files.js";

export type { HostTensor, NamedTensors, QuantizedHostTensor } from "./format/host-tensor.js";
export { parseSafetensors, serializeSafetensors } from "./format/safetensors.js";
export { parseLlama2cCheckpoint } from "./io/llama2c.js";
export { parseGgufHeader, serializeGguf, GgufType, type GgufHeader, type GgufValue, type GgufMetadataEntry } from "./format/gguf.js";
export { GgmlType, quantize, dequantize } from "./format/ggml-quants.js";
export { GgufFile, llamaConfigFromGguf, llamaTensorsFromGguf, llamaToGguf, type GgufQuant } from "./io/gguf-llama.js";
export { llamaWeightsFromGguf, llamaFromGgufWeights, type LlamaGgufWeights } from "./io/gguf-llama-quantized.js";
export { MemorySource, type ByteSource } from "./format/byte-source.js";
export { modelFiles, modelFromFiles, modelFromTensors, modelTensors, type CheckpointFile, type ModelFilesOptions } from "./io/checkpoint.js";
export { Rng } from "./util/rng.js";
