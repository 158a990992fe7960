// The Jinja environment Hugging Face transformers renders chat templates in
// (utils/chat_template_utils.py: trim_blocks, lstrip_blocks, raise_exception, strftime_now), built
// on @huggingface/jinja, with what that engine lacks or does differently mended here:
// - its Template.render declares the globals in the same scope as the variables and refuses to
//   redeclare them, so a caller could not replace strftime_now; here the globals get a scope of
//   their own and the variables a child scope;
// - its str.strip/lstrip/rstrip ignore the characters argument (Python's `s.lstrip("\n")` strips
//   only newlines; SmolLM3's and Qwen3's templates rely on it): such calls are rewritten to helpers
//   with Python's semantics after parsing;
// - its strftime_now names months in the machine's locale; Python's in English.
import { Environment, Interpreter, Template } from "@huggingface/jinja";

/** What a template's raise_exception throws, told apart from the engine's own errors. */
export class RaisedByTemplate extends Error {}

/** Python's range(), as Jinja templates call it. */
function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error("range() step must not be zero");
  const out: number[] = [];
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i);
  return out;
}

const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/** transformers' strftime_now: Python's datetime.now().strftime(format) in the C locale, local time. */
export function strftimeNow(format: string, now: Date = new Date()): string {
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  const dayOfYear = Math.round((new Date(now.getFullYear(), now.getMonth(), now.getDate()).getTime() - new Date(now.getFullYear(), 0, 1).getTime()) / 86400000) + 1;
  const fields: Record<string, string> = {
    Y: String(now.getFullYear()), y: pad(now.getFullYear() % 100), m: pad(now.getMonth() + 1), d: pad(now.getDate()),
    b: MONTHS[now.getMonth()]!.slice(0, 3), B: MONTHS[now.getMonth()]!, a: DAYS[now.getDay()]!.slice(0, 3), A: DAYS[now.getDay()]!,
    H: pad(now.getHours()), M: pad(now.getMinutes()), S: pad(now.getSeconds()), j: pad(dayOfYear, 3), "%": "%",
  };
  return format.replace(/%(.)/g, (all, c: string) => fields[c] ?? all);
}

/** Python's str.strip / lstrip / rstrip with a characters argument (None: whitespace). */
function stripChars(side: "strip" | "lstrip" | "rstrip", s: unknown, chars: unknown): string {
  if (typeof s !== "string") throw new Error(`${side}() of a ${s === null ? "none" : typeof s}: only strings have it`);
  if (chars === null || chars === undefined) return side === "strip" ? s.trim() : side === "lstrip" ? s.trimStart() : s.trimEnd();
  if (typeof chars !== "string") throw new Error(`${side}() argument must be a string or none`);
  const set = new Set(chars);
  const cps = Array.from(s);
  let from = 0, to = cps.length;
  if (side !== "rstrip") while (from < to && set.has(cps[from]!)) from++;
  if (side !== "lstrip") while (to > from && set.has(cps[to - 1]!)) to--;
  return cps.slice(from, to).join("");
}

const STRIP_HELPER = "__bonsai_strip_";

/** Rewrite `x.strip(chars)` (and lstrip, rstrip) in a parsed template to calls of the helpers. */
function rewriteStripCalls(node: unknown): void {
  if (Array.isArray(node)) {
    for (const child of node) rewriteStripCalls(child);
    return;
  }
  if (typeof node !== "object" || node === null) return;
  const n = node as { type?: string; callee?: { type?: string; computed?: boolean; object?: unknown; property?: { type?: string; value?: unknown } }; args?: unknown[] };
  for (const value of Object.values(n)) rewriteStripCalls(value);
  const callee = n.callee;
  if (n.type !== "CallExpression" || callee?.type !== "MemberExpression" || callee.computed || n.args?.length !== 1) return;
  const name = callee.property?.type === "Identifier" ? callee.property.value : undefined;
  if (name !== "strip" && name !== "lstrip" && name !== "rstrip") return;
  // The engine dispatches on `type`: an Identifier node is { type, value }.
  n.args = [callee.object, ...n.args];
  n.callee = { type: "Identifier", value: STRIP_HELPER + name } as typeof callee;
}

/** A parsed template, its string methods mended. Throws the engine's parse errors. */
export function parseTemplate(text: string): Template {
  const t = new Template(text);
  rewriteStripCalls(t.parsed);
  return t;
}

/** transformers' globals, in a scope of their own. */
function globalScope(): Environment {
  const env = new Environment();
  for (const [name, value] of [["true", true], ["false", false], ["none", null], ["True", true], ["False", false], ["None", null]] as const) env.set(name, value);
  env.set("range", range);
  env.set("strftime_now", (format: unknown) => strftimeNow(String(format)));
  env.set("raise_exception", (message: unknown) => {
    throw new RaisedByTemplate(String(message));
  });
  for (const side of ["strip", "lstrip", "rstrip"] as const) env.set(STRIP_HELPER + side, (s: unknown, chars: unknown) => stripChars(side, s, chars));
  return env;
}

/** Render a parsed template with these variables (which may replace the globals). */
export function renderTemplate(t: Template, vars: Record<string, unknown>): string {
  const scope = new Environment(globalScope());
  for (const [name, value] of Object.entries(vars)) scope.set(name, value);
  return (new Interpreter(scope).run(t.parsed) as { value: string }).value;
}
