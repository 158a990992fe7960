// Word lists for synthetic prompts: named lists of entries ("verb", "noun", "adjective" for the
// TinyStories recipe; any names for other templates), read from a --words file or a template's
// @words lines. Browser-safe (text in, lists out).
//
// The --words file format: a line `[NAME]` starts the list NAME; the entries that follow are
// separated by commas and line ends (spaces inside an entry are kept: "ice cream"); blank lines
// and lines starting with `#` are skipped; a list named twice gets the entries of both. A file
// that starts with `{` is JSON instead: {"NAME": ["entry", …], …}.
import { DEFAULT_WORDS_TEXT } from "./default-words.js";

export type WordLists = Record<string, string[]>;

/** A list name: letters, digits, `_` and `-`, starting with a letter. */
export const LIST_NAME = /^[A-Za-z][A-Za-z0-9_-]*$/;

/** The entries of a comma-separated line: trimmed, empty ones dropped. */
export function splitEntries(line: string): string[] {
  return line.split(",").map((s) => s.trim()).filter((s) => s !== "");
}

/** The lists of a --words file (`name` for messages); every list is non-empty and without repeated entries. */
export function parseWordLists(text: string, name = "word lists"): WordLists {
  const lists: WordLists = {};
  if (text.trimStart().startsWith("{")) {
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new Error(`${name}: not valid JSON: ${(e as Error).message.split("\n")[0]}`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${name}: expected a JSON object of lists, {"noun": ["cat", …], …}`);
    for (const [k, list] of Object.entries(v)) {
      if (!LIST_NAME.test(k)) throw new Error(`${name}: list name ${JSON.stringify(k)} must be letters, digits, _ or - (starting with a letter)`);
      if (!Array.isArray(list) || !list.every((s) => typeof s === "string")) throw new Error(`${name}: list "${k}" must be an array of strings`);
      lists[k] = list.map((s) => s.trim()).filter((s) => s !== "");
    }
  } else {
    let current: string | null = null;
    text.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.trim();
      if (line === "" || line.startsWith("#")) return;
      const head = /^\[(.*)\]$/.exec(line);
      if (head) {
        const list = head[1].trim();
        if (!LIST_NAME.test(list)) throw new Error(`${name} line ${i + 1}: list name ${JSON.stringify(list)} must be letters, digits, _ or - (starting with a letter)`);
        current = list;
        lists[list] ??= [];
        return;
      }
      if (current === null) throw new Error(`${name} line ${i + 1}: entries before the first [list] header`);
      lists[current].push(...splitEntries(line));
    });
  }
  for (const [k, list] of Object.entries(lists)) {
    if (list.length === 0) throw new Error(`${name}: list "${k}" is empty`);
    lists[k] = [...new Set(list)];
  }
  if (Object.keys(lists).length === 0) throw new Error(`${name}: no lists (a list starts with a [name] line)`);
  return lists;
}

/** `lists` in the --words text format. */
export function formatWordLists(lists: WordLists): string {
  return Object.entries(lists).map(([k, list]) => `[${k}]\n${list.join(", ")}\n`).join("\n");
}

let defaults: WordLists | null = null;

/** The default vocabulary (default-words.ts): the lists verb, noun and adjective. A fresh copy. */
export function defaultWordLists(): WordLists {
  defaults ??= parseWordLists(DEFAULT_WORDS_TEXT, "the default vocabulary");
  return Object.fromEntries(Object.entries(defaults).map(([k, v]) => [k, [...v]]));
}

export { DEFAULT_WORDS_TEXT };
