// What a filter rule says about a document: keep it (possibly rewritten, as C4's line rules do),
// or remove it, naming the rule and the figures that decided it.

export interface Removal {
  keep: false;
  /** "family:rule", e.g. "gopher-quality:mean-word-length". */
  rule: string;
  /** The document's figure and the threshold it crossed (absent for a yes/no rule such as "lorem ipsum"). */
  value?: number;
  threshold?: number;
  /** For a rule with two bounds (word count, mean word length): which one. */
  bound?: "min" | "max";
  /** More figures, e.g. C4's dropped lines by reason. */
  detail?: Record<string, unknown>;
}

export type RuleOutcome = { keep: true; /** The text to keep when the rule rewrote it. */ text?: string } | Removal;

export const KEEP: RuleOutcome = { keep: true };

/** A threshold that may be switched off (null), as datatrove's None. */
export type Threshold = number | null;

export function removal(rule: string, value: number, threshold: number, extra: Partial<Pick<Removal, "bound" | "detail">> = {}): Removal {
  return { keep: false, rule, value, threshold, ...extra };
}

/** A yes/no rule's removal, with where it fired. */
export function removalAt(rule: string, detail: Record<string, unknown>): Removal {
  return { keep: false, rule, detail };
}

/** a / b, with 0 / 0 = 0 (datatrove divides by zero only where its other rules have already removed the document). */
export const ratio = (a: number, b: number): number => (b === 0 ? (a === 0 ? 0 : Infinity) : a / b);
