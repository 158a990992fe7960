// The quality filter as one function: an optional language check, then the chosen rule families
// in the order given, each seeing the text as the ones before left it (C4 drops lines, as in a
// datatrove pipeline). The first rule that removes the document names it.
import { C4_DEFAULTS, type C4DroppedLines, type C4Options, c4 } from "./c4.js";
import { FINEWEB_DEFAULTS, type FineWebOptions, fineweb } from "./fineweb.js";
import { GOPHER_QUALITY_DEFAULTS, type GopherQualityOptions, gopherQuality } from "./gopher-quality.js";
import { GOPHER_REPETITION_DEFAULTS, type GopherRepetitionOptions, gopherRepetition } from "./gopher-repetition.js";
import { type LanguageOptions, languageCheck } from "./language.js";
import type { RuleOutcome } from "./outcome.js";

export const FILTER_RULES = ["gopher-quality", "gopher-repetition", "c4", "fineweb"] as const;
export type FilterRule = (typeof FILTER_RULES)[number];

export interface FilterOptions {
  rules: readonly FilterRule[];
  gopherQuality: GopherQualityOptions;
  gopherRepetition: GopherRepetitionOptions;
  c4: C4Options;
  fineweb: FineWebOptions;
  /** Off when null. */
  language: LanguageOptions | null;
}

export const FILTER_DEFAULTS: FilterOptions = {
  rules: FILTER_RULES,
  gopherQuality: GOPHER_QUALITY_DEFAULTS,
  gopherRepetition: GOPHER_REPETITION_DEFAULTS,
  c4: C4_DEFAULTS,
  fineweb: FINEWEB_DEFAULTS,
  language: null,
};

/**
 * Keep or remove `text`; a kept text that C4 rewrote comes back as `text`. The lines C4 dropped
 * from a kept document are added to `dropped` when given.
 */
export function filterText(text: string, o: FilterOptions = FILTER_DEFAULTS, dropped?: C4DroppedLines): RuleOutcome {
  if (o.language) {
    const v = languageCheck(text, o.language);
    if (!v.keep) return v;
  }
  let current = text;
  const lines: C4DroppedLines = {};
  for (const rule of o.rules) {
    const v =
      rule === "gopher-quality" ? gopherQuality(current, o.gopherQuality)
      : rule === "gopher-repetition" ? gopherRepetition(current, o.gopherRepetition)
      : rule === "c4" ? c4(current, o.c4, lines)
      : fineweb(current, o.fineweb);
    if (!v.keep) return v;
    if (v.text !== undefined) current = v.text;
  }
  if (dropped) for (const [why, n] of Object.entries(lines) as [keyof C4DroppedLines, number][]) dropped[why] = (dropped[why] ?? 0) + n;
  return current === text ? { keep: true } : { keep: true, text: current };
}
