// A teacher's label of a document's quality (`bonsai data label`): the rubric with the document
// in it goes to the teacher (teacher.ts: a Bonsai model in this process or an OpenAI-compatible
// server), and the score is read out of the reply. A reply without a score in the label range is
// asked again with another sampling seed (and, after a greedy first answer, a temperature above
// 0, or a deterministic teacher would repeat itself), up to `retries` times; then the document is
// left unlabelled (label null) with the last reply. Browser-safe.
import { deriveSeed } from "../../util/rng.js";
import { type Teacher, type TeacherUsage, TeacherError } from "../teacher.js";

/**
 * FineWeb-Edu's additive 0–5 educational-value rubric, paraphrased in our words. The original is
 * the annotation prompt of Penedo et al. 2024, "The FineWeb Datasets: Decanting the Web for the
 * Finest Text Data at Scale", Appendix F.1, which Llama-3-70B-Instruct answered for FineWeb-Edu's
 * 450k labels; ours keeps its structure — five criteria each adding a point, a short
 * justification, and the closing line "Educational score: <points>" that the score is read from.
 */
export const FINEWEB_EDU_RUBRIC = `Here is an excerpt from a web page. Judge how useful it would be for teaching, from primary school up to grade school, by adding up points with the 5-point scale below. Each point is earned only when its criterion holds:

- 1 point if the excerpt gives some basic information on an educational subject, even if it also carries off-topic or non-academic material such as adverts or promotion.
- A 2nd point if it touches on things that matter for education without meeting educational standards: educational and other content mixed together, a shallow survey of topics that could be useful, or disorganised, incoherent writing.
- A 3rd point if it is fit for use in a classroom and introduces ideas that belong in a school curriculum. It is coherent, though perhaps incomplete or carrying some extra material; it might read like the opening of a textbook chapter or a simple tutorial that teaches something but has clear limits, such as concepts too advanced for grade school.
- A 4th point if it is highly relevant and valuable for teaching at a level no higher than grade school, in a clear and consistent style, like a textbook chapter or a tutorial with substantial content, exercises and worked answers, and little that is irrelevant. The ideas are not too advanced for grade school students, and the content is coherent, focused and worth learning from.
- A 5th point if it is outstanding for teaching primary school or grade school: detailed, well reasoned and easy to follow, with no irrelevant or needlessly complex material, as a textbook for that level would be.

The excerpt:
{text}

After the excerpt:
- Explain briefly, in at most 100 words, how many points it earns and why.
- Then end with the score on a line of its own, in exactly this form: "Educational score: <total points>"
`;

export const BUILTIN_RUBRICS: Record<string, string> = { "fineweb-edu": FINEWEB_EDU_RUBRIC };

/** The placeholder a rubric's template must hold: the document's text goes there. */
export const RUBRIC_PLACEHOLDER = "{text}";

/** Check a rubric's template: it must hold {text}. Returns it. */
export function checkRubric(template: string, name: string): string {
  if (!template.includes(RUBRIC_PLACEHOLDER)) throw new Error(`${name}: a rubric must hold ${RUBRIC_PLACEHOLDER} where the document goes`);
  return template;
}

/** The prompt for one document: every {text} of the template replaced by the text (cut to `maxChars` characters when given). */
export function renderRubric(template: string, text: string, maxChars?: number): string {
  const t = maxChars !== undefined && text.length > maxChars ? text.slice(0, maxChars) : text;
  return template.split(RUBRIC_PLACEHOLDER).join(t);
}

/** FineWeb-Edu's reply format: "Educational score: N" (markdown emphasis around it allowed). */
export const DEFAULT_SCORE_PATTERN = /educational score\s*[:：]\s*\**\s*(-?\d+(?:\.\d+)?)/gi;

/**
 * The score in a reply: the number of the last match of `pattern` (its first group), or null when
 * there is none or it lies outside `range`.
 */
export function parseLabel(reply: string, pattern: RegExp = DEFAULT_SCORE_PATTERN, range: [number, number] = [0, 5]): number | null {
  const re = new RegExp(pattern.source, pattern.flags.includes("g") ? pattern.flags : pattern.flags + "g");
  let last: string | undefined;
  for (const m of reply.matchAll(re)) last = m[1] ?? m[0];
  if (last === undefined) return null;
  const v = Number(last);
  return Number.isFinite(v) && v >= range[0] && v <= range[1] ? v : null;
}

export interface LabelOptions {
  teacher: Teacher;
  /** The rubric's template (holds {text}). */
  rubric: string;
  /** Most tokens of a reply (256: a justification of ≤ 100 words and the score line). */
  maxTokens?: number;
  /** The first attempt's temperature (0: greedy). */
  temperature?: number;
  /** Later attempts' temperature when the first is greedy (0.7). */
  retryTemperature?: number;
  /** Asks again after a reply without a score (3). */
  retries?: number;
  /** Sampling seeds are derived from (seed, index, attempt). */
  seed?: number;
  /** Only a document's first maxChars characters go into the prompt (unlimited when absent). */
  maxChars?: number;
  pattern?: RegExp;
  labelRange?: [number, number];
  signal?: AbortSignal;
}

export interface LabelResult {
  /** The score, or null: no reply held one, or the teacher refused the request. */
  label: number | null;
  /** The last reply ("" when the teacher refused). */
  reply: string;
  /** Requests made. */
  attempts: number;
  usage: TeacherUsage;
  /** The teacher refused the request (TeacherError.refused): asking again would fail the same way. */
  refused?: string;
}

/**
 * Label document `index` (see the header). A refused request is a result (label null, `refused`);
 * a request that failed after the teacher's own retries rejects with its TeacherError.
 */
export async function labelDocument(text: string, index: number, o: LabelOptions): Promise<LabelResult> {
  const prompt = renderRubric(o.rubric, text, o.maxChars);
  const retries = o.retries ?? 3, t0 = o.temperature ?? 0, seed = o.seed ?? 0;
  const usage: TeacherUsage = { prompt_tokens: 0, completion_tokens: 0 };
  let reply = "";
  for (let attempt = 0; attempt <= retries; attempt++) {
    const temperature = attempt > 0 && t0 === 0 ? (o.retryTemperature ?? 0.7) : t0;
    let answer;
    try {
      answer = await o.teacher.complete(prompt, { maxTokens: o.maxTokens ?? 256, temperature, seed: deriveSeed(seed, index, attempt), signal: o.signal });
    } catch (e) {
      if (e instanceof TeacherError && e.refused) return { label: null, reply: "", attempts: attempt + 1, usage, refused: e.message };
      throw e;
    }
    usage.prompt_tokens += answer.usage.prompt_tokens;
    usage.completion_tokens += answer.usage.completion_tokens;
    reply = answer.text;
    const label = parseLabel(reply, o.pattern, o.labelRange);
    if (label !== null) return { label, reply, attempts: attempt + 1, usage };
  }
  return { label: null, reply, attempts: retries + 1, usage };
}
