// Prompt templates for synthetic data: a text with placeholders that each prompt fills with
// ingredients drawn from named word lists, deterministically from a seed and the record's index
// (the TinyStories recipe: a verb, a noun, an adjective and a few story features per prompt).
// Browser-safe.
//
// A template file:
//
//   # A comment (header lines only).
//   @words topic: loops, recursion, string slicing     a list for {topic} (repeat the line to add more;
//                                                      replaces a --words list of the same name)
//   @feature dialogue: the story should contain at least one dialogue
//                                                      a feature: its name goes in the record's
//                                                      ingredients, its phrase in the prompt
//   @system You are a patient teacher.                 chat teachers: a system message first
//   @text prompt+completion                            the record's text: the completion (default),
//                                                      or the prompt followed by it
//   ---
//   The body: everything after the --- line (trimmed), with placeholders:
//   {noun}           one entry of the list "noun"; the same placeholder twice is the same entry
//   {noun#2}         another entry of "noun", distinct from the other draws of the list
//   {features:0-3}   0 to 3 distinct entries (uniformly many), joined with ", "; {topic:2}: exactly 2
//   [[ … ]]          an optional part, kept only when every placeholder inside drew something
//   \{ \} \[ \] \\   literal characters
//
// Without a --- line the whole file is the body. `features` names the @feature entries; any other
// name is a word list: from the vocabulary (--words; by default verb, noun, adjective) or @words.
// Entries of several draws keep the order of their list.
import { Rng, deriveSeed } from "../../util/rng.js";
import { LIST_NAME, type WordLists, splitEntries } from "./words.js";

type Node =
  | { kind: "text"; value: string }
  | { kind: "slot"; key: string; list: string; min: number; max: number; range: boolean }
  | { kind: "optional"; nodes: Node[] };

export interface Feature {
  name: string;
  phrase: string;
}

export interface Template {
  /** For messages: the built-in name or the file. */
  readonly name: string;
  /** The template's text as written. */
  readonly source: string;
  readonly body: readonly Node[];
  /** @words lists. */
  readonly words: WordLists;
  readonly features: readonly Feature[];
  /** @system: a system message for chat teachers, or null. */
  readonly system: string | null;
  /** What a record's text is: the completion, or the prompt followed by the completion. */
  readonly text: "completion" | "prompt+completion";
}

/** What one prompt drew: entries by placeholder (one, or a list for a {list:a-b} draw) and feature names. */
export interface Ingredients {
  words: Record<string, string | string[]>;
  features: string[];
}

export interface DrawnPrompt {
  prompt: string;
  ingredients: Ingredients;
}

export class TemplateError extends Error {}

const SLOT = /^([A-Za-z][A-Za-z0-9_-]*)(?:#([A-Za-z0-9_-]+))?(?::(\d+)(?:-(\d+))?)?$/;

/** Parse a template's text (`name` for messages). */
export function parseTemplate(source: string, name = "template"): Template {
  const lines = source.split(/\r?\n/);
  const sep = lines.findIndex((l) => l.trim() === "---");
  const words: WordLists = {};
  const features: Feature[] = [];
  let system: string | null = null;
  let text: Template["text"] = "completion";
  if (sep < 0) {
    const first = lines.find((l) => l.trim() !== "");
    if (first?.trim().startsWith("@")) throw new TemplateError(`${name}: header lines (@…) must end with a line --- before the body`);
  }
  for (let i = 0; i < Math.max(sep, 0); i++) {
    const line = lines[i].trim();
    const at = `${name} line ${i + 1}`;
    if (line === "" || line.startsWith("#")) continue;
    const m = /^@(\w+)\s*(.*)$/.exec(line);
    if (!m) throw new TemplateError(`${at}: expected @words, @feature, @system, @text or a # comment before ---, got ${JSON.stringify(line)}`);
    const [, directive, rest] = m;
    if (directive === "words" || directive === "feature") {
      const colon = rest.indexOf(":");
      const list = (colon < 0 ? "" : rest.slice(0, colon)).trim();
      const value = rest.slice(colon + 1).trim();
      if (colon < 0 || !LIST_NAME.test(list)) throw new TemplateError(`${at}: expected @${directive} NAME: ${directive === "words" ? "entry, entry, …" : "phrase"} (NAME: letters, digits, _ or -)`);
      if (directive === "words") {
        if (list === "features") throw new TemplateError(`${at}: "features" is the list of @feature lines; name the word list otherwise`);
        (words[list] ??= []).push(...splitEntries(value));
      } else {
        if (value === "") throw new TemplateError(`${at}: feature "${list}" has no phrase`);
        if (features.some((f) => f.name === list)) throw new TemplateError(`${at}: feature "${list}" is defined twice`);
        features.push({ name: list, phrase: value });
      }
    } else if (directive === "system") {
      if (rest === "") throw new TemplateError(`${at}: @system needs the message's text`);
      system = system === null ? rest : `${system}\n${rest}`;
    } else if (directive === "text") {
      if (rest !== "completion" && rest !== "prompt+completion") throw new TemplateError(`${at}: @text must be completion or prompt+completion (got ${JSON.stringify(rest)})`);
      text = rest;
    } else throw new TemplateError(`${at}: unknown directive @${directive} (expected @words, @feature, @system or @text)`);
  }
  for (const [k, list] of Object.entries(words)) {
    if (list.length === 0) throw new TemplateError(`${name}: @words ${k} has no entries`);
    words[k] = [...new Set(list)];
  }
  const bodyText = lines.slice(sep + 1).join("\n").trim();
  if (bodyText === "") throw new TemplateError(`${name}: the body (the prompt's text${sep >= 0 ? ", after ---" : ""}) is empty`);
  return { name, source, body: parseBody(bodyText, name), words, features, system, text };
}

function parseBody(s: string, name: string): Node[] {
  const top: Node[] = [];
  let nodes = top;
  let textBuf = "";
  const flush = (): void => {
    if (textBuf !== "") nodes.push({ kind: "text", value: textBuf });
    textBuf = "";
  };
  const slots = new Map<string, string>();
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "\\" && i + 1 < s.length && "\\{}[]".includes(s[i + 1])) {
      textBuf += s[++i];
    } else if (c === "{") {
      const end = s.indexOf("}", i);
      if (end < 0) throw new TemplateError(`${name}: a { without its } (write \\{ for the character)`);
      const spec = s.slice(i + 1, end).trim();
      const m = SLOT.exec(spec);
      if (!m) throw new TemplateError(`${name}: {${spec}} is not a placeholder ({list}, {list#tag}, {list:n} or {list:a-b}; \\{ for the character)`);
      const [, list, tag, a, b] = m;
      const min = a === undefined ? 1 : Number(a), max = b === undefined ? min : Number(b);
      if (max < min) throw new TemplateError(`${name}: {${spec}}: the range ${min}-${max} is empty`);
      if (a !== undefined && max === 0) throw new TemplateError(`${name}: {${spec}} never draws anything`);
      const key = tag === undefined ? list : `${list}#${tag}`;
      const norm = `${min}-${max}-${a !== undefined}`;
      if (slots.has(key) && slots.get(key) !== norm) throw new TemplateError(`${name}: {${key}} is written with two different counts`);
      slots.set(key, norm);
      flush();
      nodes.push({ kind: "slot", key, list, min, max, range: a !== undefined });
      i = end;
    } else if (c === "}") {
      throw new TemplateError(`${name}: a } without its { (write \\} for the character)`);
    } else if (c === "[" && s[i + 1] === "[") {
      if (nodes !== top) throw new TemplateError(`${name}: optional parts [[ … ]] cannot nest`);
      flush();
      const opt: Node = { kind: "optional", nodes: [] };
      top.push(opt);
      nodes = opt.nodes;
      i++;
    } else if (c === "]" && s[i + 1] === "]" && nodes !== top) {
      flush();
      nodes = top;
      i++;
    } else textBuf += c;
  }
  if (nodes !== top) throw new TemplateError(`${name}: a [[ without its ]]`);
  flush();
  return top;
}

/** A template with the lists it draws from, checked: what drawPrompt needs. */
export interface Recipe {
  readonly template: Template;
  /** Every list a placeholder names (features: the @feature names). */
  readonly lists: Readonly<WordLists>;
}

function slotsOf(nodes: readonly Node[]): Extract<Node, { kind: "slot" }>[] {
  return nodes.flatMap((n) => (n.kind === "slot" ? [n] : n.kind === "optional" ? slotsOf(n.nodes) : []));
}

/**
 * The template bound to the vocabulary (its @words lists over `vocabulary`'s of the same name).
 * Throws when a placeholder names no list, or a list is too short for the distinct entries its
 * placeholders may draw at once.
 */
export function makeRecipe(template: Template, vocabulary: WordLists): Recipe {
  const lists: WordLists = { ...vocabulary, ...template.words };
  if (template.features.length > 0) lists.features = template.features.map((f) => f.name);
  const demand = new Map<string, number>();
  const seen = new Set<string>();
  for (const s of slotsOf(template.body)) {
    if (!lists[s.list] || (s.list === "features" && template.features.length === 0)) {
      const known = Object.keys(lists).filter((k) => k !== "features" || template.features.length > 0);
      const hint = s.list === "features" ? "define features with @feature NAME: phrase" : `lists: ${known.join(", ") || "none"}`;
      throw new TemplateError(`${template.name}: {${s.key}} names no list "${s.list}" (${hint})`);
    }
    if (seen.has(s.key)) continue;
    seen.add(s.key);
    demand.set(s.list, (demand.get(s.list) ?? 0) + s.max);
  }
  for (const [list, n] of demand)
    if (n > lists[list].length) throw new TemplateError(`${template.name}: the placeholders of "${list}" may draw ${n} distinct entries; the list has ${lists[list].length}`);
  return { template, lists };
}

/** The stream of the prompt generator: drawing does not share a stream with anything seeded by (seed, index). */
const DRAW_STREAM = 0x5f3759df;

/**
 * Record `index`'s prompt: its placeholders filled by a generator seeded from (seed, index) alone,
 * so a prompt is the same whatever else runs, and a restart draws the same one.
 */
export function drawPrompt(recipe: Recipe, seed: number, index: number): DrawnPrompt {
  const rng = new Rng(deriveSeed(seed, index, DRAW_STREAM));
  const { template, lists } = recipe;
  const drawn = new Map<string, string[]>();
  const used = new Map<string, Set<number>>();
  for (const s of slotsOf(template.body)) {
    if (drawn.has(s.key)) continue;
    const list = lists[s.list];
    const taken = used.get(s.list) ?? new Set<number>();
    used.set(s.list, taken);
    const k = s.min + rng.int(s.max - s.min + 1);
    const free: number[] = [];
    for (let i = 0; i < list.length; i++) if (!taken.has(i)) free.push(i);
    const picked: number[] = [];
    for (let j = 0; j < k; j++) {
      const r = j + rng.int(free.length - j);
      [free[j], free[r]] = [free[r], free[j]];
      picked.push(free[j]);
      taken.add(free[j]);
    }
    picked.sort((a, b) => a - b);
    drawn.set(s.key, picked.map((i) => list[i]));
  }
  const phrase = new Map(template.features.map((f) => [f.name, f.phrase]));
  const show = (s: Extract<Node, { kind: "slot" }>): string => drawn.get(s.key)!.map((e) => (s.list === "features" ? phrase.get(e)! : e)).join(", ");
  const render = (nodes: readonly Node[]): string =>
    nodes
      .map((n) => {
        if (n.kind === "text") return n.value;
        if (n.kind === "slot") return show(n);
        return slotsOf(n.nodes).every((s) => drawn.get(s.key)!.length > 0) ? render(n.nodes) : "";
      })
      .join("");
  const ingredients: Ingredients = { words: {}, features: [] };
  const ranged = new Map(slotsOf(template.body).map((s) => [s.key, s.range]));
  for (const [key, entries] of drawn) {
    if (key.split("#")[0] === "features") ingredients.features.push(...entries);
    else ingredients.words[key] = ranged.get(key) ? entries : entries[0];
  }
  return { prompt: render(template.body), ingredients };
}
