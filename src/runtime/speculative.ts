// Speculative decoding (Leviathan et al. 2023; Chen et al. 2023). A cheap drafter proposes K
// tokens, sampled from its distributions q; one target pass over those K positions gives the
// target's distributions p. Draft x is accepted with probability min(1, p(x)/q(x)); at the first
// rejection the token is drawn from norm(max(0, p − q)) instead, and when all K pass the target's
// last row gives one bonus token. Every emitted token is then distributed exactly as if the target
// had sampled it alone, while a round costs one target pass for up to K + 1 tokens.
//
// p and q are the sampler's final distributions (sample.ts: penalties over the same accepted
// history, top-k/top-p/min-p, temperature). At temperature 0 both are point masses on argmaxes, so
// a draft is kept iff it is the target's greedy token: the output is the target's greedy output.
//
// The drafter is a smaller model sharing the vocabulary, or prompt lookup (ngram-draft.ts), whose
// q is a point mass on its proposal: accept x with probability p(x), else draw from p without x —
// the same formula with q = δx.
import type { FloatArray } from "../backend/backend.js";
import { Llama } from "../nn/llama.js";
import type { Tokenizer } from "../tokenizer/tokenizer.js";
import { Rng } from "../util/rng.js";
import { type GenerateOptions, emptyStats } from "./generate.js";
import { type NgramOptions, ngramDraft, validateNgramOptions } from "./ngram-draft.js";
import { type SampleOptions, drawFrom, finalProbs, penalized, validateSampleOptions } from "./sample.js";
import { type PrefillOptions, Session } from "./session.js";

/**
 * What speculative decoding needs of a model: its vocabulary, its window, and KV-cache sessions
 * that can roll back (session.ts). A Llama is adapted to it; so can be any logits provider.
 */
export interface DecoderModel {
  readonly vocabSize: number;
  /** Positions one pass can see (max_position_embeddings). */
  readonly window: number;
  session(maxSeq: number): DecoderSession;
}

export interface DecoderSession {
  readonly position: number;
  readonly maxSeq: number;
  prefill(tokens: ArrayLike<number>, opts?: PrefillOptions): Promise<FloatArray>;
  decode(token: number): Promise<FloatArray>;
  truncate(pos: number): void;
  dispose(): void;
}

function asDecoder(m: Llama | DecoderModel): DecoderModel {
  if (!(m instanceof Llama)) return m;
  return { vocabSize: m.config.vocab_size, window: m.config.max_position_embeddings, session: (maxSeq) => new Session(m, { maxSeq }) };
}

/** One round, for observers: the drafts, how many were accepted, the context after the round. */
export interface SpeculativeRound {
  drafted: readonly number[];
  accepted: number;
  /** The accepted context (prompt and every token so far, this round's included). */
  context: readonly number[];
  /** The caches, rolled back: the target's holds all of `context` but its last token (lent for inspection; leave their positions as they are). */
  target: DecoderSession;
  draft: DecoderSession | null;
}

/**
 * How `auto` picks the draft length. "heuristic": Hugging Face's schedule, K += 2 after a round
 * that accepted every draft, K −= 1 otherwise. "confidence": llama.cpp's, draft up to the maximum
 * but stop as soon as the draft model's own probability of its top token falls under pMin.
 */
export type AdaptiveRule = "heuristic" | "confidence";

/** The rule `auto` uses with a draft model (prompt lookup has no confidence: always the heuristic). */
export const DEFAULT_ADAPTIVE_RULE: AdaptiveRule = "confidence";

export interface SpeculativeConfig extends NgramOptions {
  /** A draft model over the same vocabulary, or "ngram" for prompt lookup. */
  draft: Llama | DecoderModel | "ngram";
  /** Tokens drafted per round, or "auto" (default) to adapt it. */
  draftTokens?: number | "auto";
  /** The adaptive rule for "auto" (default DEFAULT_ADAPTIVE_RULE). */
  adaptive?: AdaptiveRule;
  /** Longest draft under "auto" (default 16). */
  maxDraftTokens?: number;
  /** "confidence": the draft model's top-token probability below which drafting stops (default 0.75). */
  pMin?: number;
  /** Filled in as generation proceeds. */
  stats?: SpeculativeStats;
  /** Called after every round, before its tokens are yielded. */
  onRound?: (r: SpeculativeRound) => void | Promise<void>;
  /**
   * For the distribution test only: resample a rejection from p instead of norm(max(0, p − q)).
   * That is wrong (it over-weights tokens the draft already proposed too often); the test shows it.
   */
  wrongResidual?: boolean;
}

export interface SpeculativeStats {
  /** Tokens proposed by the drafter. */
  drafted: number;
  /** Proposed tokens the target accepted. */
  accepted: number;
  /** Target forward passes after the prompt (one per round). */
  targetPasses: number;
  /** Draft model forward passes (0 for prompt lookup). */
  draftPasses: number;
  /** Seconds in target passes after the prompt, and in drafting (model passes or lookup). */
  targetSeconds: number;
  draftSeconds: number;
  /** Tokens emitted by the rounds. */
  tokens: number;
}

export function emptySpeculativeStats(): SpeculativeStats {
  return { drafted: 0, accepted: 0, targetPasses: 0, draftPasses: 0, targetSeconds: 0, draftSeconds: 0, tokens: 0 };
}

/** The derived figures --stats prints: acceptance rate, accepted drafts and tokens per target pass. */
export function summarizeSpeculative(s: SpeculativeStats): { acceptanceRate: number | null; acceptedPerPass: number | null; tokensPerPass: number | null } {
  return {
    acceptanceRate: s.drafted > 0 ? s.accepted / s.drafted : null,
    acceptedPerPass: s.targetPasses > 0 ? s.accepted / s.targetPasses : null,
    tokensPerPass: s.targetPasses > 0 ? s.tokens / s.targetPasses : null,
  };
}

/**
 * Draft and target must share one vocabulary: the same size and, when both tokenizers are known,
 * the same text for every id (and the same BOS/EOS). Throws a one-line error otherwise.
 */
export function checkDraftVocabulary(target: Llama | DecoderModel, draft: Llama | DecoderModel, targetTokenizer?: Tokenizer | null, draftTokenizer?: Tokenizer | null): void {
  const a = asDecoder(target).vocabSize, b = asDecoder(draft).vocabSize;
  if (a !== b) throw new Error(`draft model's vocabulary has ${b} tokens, the target's ${a}: speculative decoding needs one shared vocabulary`);
  if (!targetTokenizer || !draftTokenizer) return;
  if (targetTokenizer.vocabSize !== draftTokenizer.vocabSize)
    throw new Error(`draft tokenizer has ${draftTokenizer.vocabSize} tokens, the target's ${targetTokenizer.vocabSize}: speculative decoding needs one shared vocabulary`);
  if (targetTokenizer.bosId !== draftTokenizer.bosId || targetTokenizer.eosId !== draftTokenizer.eosId)
    throw new Error("draft and target tokenizers have different BOS/EOS ids: speculative decoding needs one shared vocabulary");
  for (let id = 0; id < targetTokenizer.vocabSize; id++) {
    const x = targetTokenizer.decode([id]), y = draftTokenizer.decode([id]);
    if (x !== y) throw new Error(`draft and target vocabularies differ at token ${id} (${JSON.stringify(y)} vs ${JSON.stringify(x)}): speculative decoding needs one shared vocabulary`);
  }
}

/** Throws a one-line error for bad options, or a draft model whose vocabulary is not the target's. */
export function validateSpeculativeConfig(c: SpeculativeConfig, target: Llama | DecoderModel): void {
  const k = c.draftTokens ?? "auto";
  if (k !== "auto" && !(Number.isInteger(k) && k >= 1)) throw new Error(`draft tokens must be an integer >= 1 or "auto" (got ${k})`);
  const m = c.maxDraftTokens ?? 16;
  if (!(Number.isInteger(m) && m >= 1)) throw new Error(`max draft tokens must be an integer >= 1 (got ${m})`);
  const pMin = c.pMin ?? 0.75;
  if (!(pMin >= 0 && pMin <= 1)) throw new Error(`draft p-min must be in [0, 1] (got ${pMin})`);
  if (c.adaptive !== undefined && c.adaptive !== "heuristic" && c.adaptive !== "confidence")
    throw new Error(`adaptive rule must be "heuristic" or "confidence" (got ${String(c.adaptive)})`);
  if (c.draft === "ngram") validateNgramOptions(c);
  else checkDraftVocabulary(target, c.draft);
}

/** How many tokens a round drafts, resolved from a config: fixed, or adapted by `rule` up to maxK. */
export interface DraftPolicy {
  fixedK: number | null;
  maxK: number;
  rule: AdaptiveRule;
  pMin: number;
  /** K of the first round. */
  firstK: number;
}

export function draftPolicy(sc: Pick<SpeculativeConfig, "draft" | "draftTokens" | "adaptive" | "maxDraftTokens" | "pMin">): DraftPolicy {
  const fixedK = sc.draftTokens === undefined || sc.draftTokens === "auto" ? null : sc.draftTokens;
  const maxK = fixedK ?? sc.maxDraftTokens ?? 16;
  // Prompt lookup has no confidence: always the heuristic.
  const rule: AdaptiveRule = sc.draft === "ngram" ? "heuristic" : (sc.adaptive ?? DEFAULT_ADAPTIVE_RULE);
  // The heuristic's K starts at 4 (Hugging Face starts at 20, too many for small drafters).
  return { fixedK, maxK, rule, pMin: sc.pMin ?? 0.75, firstK: fixedK ?? (rule === "heuristic" ? Math.min(4, maxK) : maxK) };
}

/** The confidence rule: go on drafting while the draft model's top probability is at least pMin. */
export function keepDrafting(p: DraftPolicy, logits: ArrayLike<number>): boolean {
  return !(p.fixedK === null && p.rule === "confidence" && topProbability(logits) < p.pMin);
}

/** The heuristic rule's next K: +2 after a round that accepted every draft, −1 otherwise. */
export function nextDraftLength(p: DraftPolicy, k: number, accepted: number, drafted: number): number {
  if (p.fixedK !== null || p.rule !== "heuristic" || drafted === 0) return k;
  return accepted === drafted ? Math.min(k + 2, p.maxK) : Math.max(1, k - 1);
}

/** What the penalties read before a drafted position: the context and the drafts before it (no copy when off). */
export function penaltyHistory(o: SampleOptions, context: readonly number[], drafts: readonly number[]): readonly number[] {
  return penalized(o) ? context.concat(drafts) : context;
}

/** The draft model's probability of its most likely token (temperature 1): its confidence. */
function topProbability(logits: ArrayLike<number>): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i] - max);
  return 1 / z;
}

/** A point mass: the q of a deterministic drafter. */
export function pointMass(size: number, x: number): Float64Array {
  const q = new Float64Array(size);
  q[x] = 1;
  return q;
}

/**
 * Yields generated token ids, as generateTokens does, with the target's output distribution (its
 * greedy output at temperature 0), drafting with `o.speculative.draft`.
 */
export async function* speculativeTokens(targetModel: Llama | DecoderModel, prompt: number[], o: GenerateOptions & { speculative: SpeculativeConfig }): AsyncGenerator<number> {
  validateSampleOptions(o);
  const sc = o.speculative;
  const target = asDecoder(targetModel);
  validateSpeculativeConfig(sc, target);
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 0) throw new Error(`max tokens must be a non-negative integer (got ${o.maxTokens})`);
  if (prompt.length === 0) throw new Error("generation needs at least one prompt token");
  const vocab = target.vocabSize;
  for (const id of prompt) if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new Error(`prompt token ${id} is outside the vocabulary [0, ${vocab})`);
  if (o.maxTokens === 0) return;

  const draftModel = sc.draft === "ngram" ? null : asDecoder(sc.draft);
  const policy = draftPolicy(sc);
  let k = policy.firstK;

  const rng = new Rng(o.seed ?? 0);
  const stop = new Set(o.stopIds ?? []);
  const stats = o.stats ?? emptyStats();
  const ss = sc.stats ?? emptySpeculativeStats();
  const window = target.window;
  const cap = prompt.length + o.maxTokens;
  const tSession = target.session(Math.min(window, cap));
  const dSession = draftModel ? draftModel.session(Math.min(draftModel.window, cap)) : null;
  // The accepted context; each cache holds a prefix of it (never its last token, which the next
  // pass feeds): tValid / dValid positions.
  const ctx = [...prompt];
  let tValid = 0, dValid = 0;
  const now = (): number => performance.now() / 1000;
  // The history the penalties read: the context and the drafts before a position (no copy when off).
  const history = (drafts: readonly number[]): readonly number[] => penaltyHistory(o, ctx, drafts);
  try {
    // The prompt but its last token, once: a prefill, not a round.
    if (prompt.length > 1 && prompt.length <= window) {
      const t0 = now();
      await tSession.prefill(prompt.slice(0, -1));
      tValid = prompt.length - 1;
      stats.prefillSeconds += now() - t0;
      stats.prefillTokens += tValid;
      if (dSession && prompt.length <= dSession.maxSeq) {
        const t1 = now();
        await dSession.prefill(prompt.slice(0, -1));
        dValid = prompt.length - 1;
        ss.draftSeconds += now() - t1;
        ss.draftPasses++;
      }
    }
    let emitted = 0;
    while (emitted < o.maxTokens) {
      const roundStart = now();
      const remaining = o.maxTokens - emitted;
      // Drafts beyond what can be emitted, or beyond the caches, are never proposed.
      let limit = Math.min(k, remaining - 1, tSession.maxSeq - ctx.length);
      if (dSession) limit = Math.min(limit, dSession.maxSeq - ctx.length + 1);

      // 1. Draft up to `limit` tokens, each with its distribution q.
      const drafts: number[] = [], qs: Float64Array[] = [];
      let fed = 0; // drafts fed back into the draft model's cache
      if (limit > 0) {
        const t0 = now();
        if (dSession) {
          dSession.truncate(dValid);
          let logits: FloatArray = await dSession.prefill(ctx.slice(dValid));
          ss.draftPasses++;
          for (let i = 0; i < limit; i++) {
            if (!keepDrafting(policy, logits)) break;
            const q = finalProbs(logits, o, history(drafts));
            const x = drawFrom(q, rng);
            drafts.push(x);
            qs.push(q);
            if (i + 1 < limit) {
              logits = await dSession.decode(x);
              ss.draftPasses++;
              fed++;
            }
          }
        } else {
          for (const x of ngramDraft(ctx, limit, sc)) {
            drafts.push(x);
            qs.push(pointMass(vocab, x));
          }
        }
        ss.draftSeconds += now() - t0;
        ss.drafted += drafts.length;
      }

      // 2. One target pass over the pending context token(s) and the drafts: row r predicts the
      // token after feed[r]. Past the target's window it recomputes the last `window` tokens
      // (drafts is then empty), as generateTokens does.
      const t0 = now();
      let rows: FloatArray, first: number;
      const V = vocab;
      if (ctx.length <= window) {
        tSession.truncate(tValid);
        const feed = ctx.slice(tValid).concat(drafts);
        rows = await tSession.prefill(feed, { allLogits: drafts.length > 0 });
        first = drafts.length > 0 ? feed.length - drafts.length - 1 : 0;
      } else {
        tSession.truncate(0);
        rows = await tSession.prefill(ctx.slice(-window));
        first = 0;
        tValid = 0;
      }
      ss.targetPasses++;

      // 3. Accept drafts while rng < p(x)/q(x); at the first rejection draw from the residual.
      const { accepted, next } = verifyDrafts((i) => rows.subarray((first + i) * V, (first + i + 1) * V), drafts, qs, o, history, rng, sc.wrongResidual);
      ss.targetSeconds += now() - t0;
      ss.accepted += accepted;

      // 4. Both caches roll back to the accepted prefix; the new token is pending for both.
      const oldLength = ctx.length;
      if (ctx.length <= window) {
        tValid = oldLength + accepted;
        tSession.truncate(tValid);
      }
      if (dSession && limit > 0) {
        // The draft cache holds the old context and the drafts fed back (all but the last one
        // sampled, unless drafting stopped early); it keeps what the target accepted of them.
        dValid = oldLength + Math.min(accepted, fed);
        dSession.truncate(dValid);
      }
      k = nextDraftLength(policy, k, accepted, drafts.length);

      const out = drafts.slice(0, accepted);
      out.push(next);
      stats.decodeSeconds += now() - roundStart;
      await sc.onRound?.({ drafted: drafts, accepted, context: ctx.concat(out), target: tSession, draft: dSession });
      for (const t of out) {
        if (stop.has(t)) return;
        ctx.push(t);
        emitted++;
        ss.tokens++;
        stats.decodeTokens++;
        yield t;
      }
    }
  } finally {
    tSession.dispose();
    dSession?.dispose();
  }
}

/**
 * Step 3 of a round: `row(i)` is the target's logits row for the position of drafts[i] (and
 * row(drafts.length) the one after the last draft). Draft x is accepted while rng < p(x)/q(x); at
 * the first rejection the round's new token is drawn from norm(max(0, p − q)), and when every
 * draft is accepted it is drawn from the last row. `history(prefix)` is what the penalties read
 * before a position. Returns how many drafts were accepted and the new token.
 */
export function verifyDrafts(
  row: (i: number) => FloatArray, drafts: readonly number[], qs: readonly Float64Array[], o: GenerateOptions,
  history: (drafts: readonly number[]) => readonly number[], rng: Rng, wrongResidual = false,
): { accepted: number; next: number } {
  for (let i = 0; i < drafts.length; i++) {
    const p = finalProbs(row(i), o, history(drafts.slice(0, i)));
    const x = drafts[i], q = qs[i];
    if (q[x] <= p[x] || rng.next() * q[x] < p[x]) continue;
    const residual = new Float64Array(p.length);
    let mass = 0;
    for (let t = 0; t < p.length; t++) mass += residual[t] = wrongResidual ? p[t] : Math.max(0, p[t] - q[t]);
    // p(x) < q(x) leaves mass > 0 in exact arithmetic; rounding to 0 would mean p ≈ q: draw from p.
    return { accepted: i, next: drawFrom(mass > 0 ? residual : p, rng) };
  }
  // Every draft accepted (or none proposed): the bonus token from the target's last row.
  return { accepted: drafts.length, next: drawFrom(finalProbs(row(drafts.length), o, history([...drafts])), rng) };
}
