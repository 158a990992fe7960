// A cheap language check for documents in a Latin-script language: a heuristic, not a language
// identifier such as fastText's lid.176 that datatrove's LanguageFilter runs. It rests on two
// facts: a language's few dozen most common function words make up a third to a half of its running
// text, and they differ between languages. For a document:
//
//   no-letters      no letter at all                                              → remove
//   script          Latin letters (\p{Script=Latin}) / all letters < 0.5         → remove
//   function-words  for each known language, the share of the document's words (lower-cased
//                   letter runs) that are among its function words; if another language's share is
//                   higher than the wanted one's → remove as "other"; else if the wanted one's share
//                   is < 0.15 → remove as "function-words"
//
// Short texts, lists, code and mixed-language documents fool it; it tells English from German,
// French, Spanish, Italian, Dutch and Portuguese, and nothing else. The word lists are the most
// frequent function words of each language, about fifty each.
import { type RuleOutcome, type Threshold, KEEP, removal, removalAt } from "./outcome.js";

const FUNCTION_WORDS: Record<string, string> = {
  en: "the of and to a in is it you that he was for on are with as i his they be at one have this from or had by not but what all were we when your can said there she her him my so an do if will would no me them then",
  de: "der die und in den von zu das mit sich des auf für ist im dem nicht ein eine als auch es an werden aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber vor zur bis mehr durch man ich wir du",
  fr: "de la le et les des en un du une que est pour qui dans a par plus pas au sur ne se ce il sont avec elle ou mais nous vous je aux été son sa ses leur était on cette comme tout y lui qu d l",
  es: "de la que el en y a los del se las por un para con no una su al lo como más pero sus le ya o este sí porque esta entre cuando muy sin sobre también me hasta hay donde quien desde todo nos durante es era fue",
  it: "di e il la che è per un in del non una della le i a con si da lo al sono gli ma come anche nel alla più dei se delle ha questo era ci io mi ti suo sua molto quando degli nella",
  nl: "de van het een en in is dat op te zijn voor met die niet aan er om ook als bij door maar of uit wordt nog dan naar over hij ze je ik was worden tot heeft zij wat we kan geen hun dit",
  pt: "de a o que e do da em um para é com não uma os no se na por mais as dos como mas foi ao ele das tem à seu sua ou ser quando muito há nos já está eu também só pelo pela até isso ela entre era",
};
const LISTS = new Map(Object.entries(FUNCTION_WORDS).map(([lang, words]) => [lang, new Set(words.split(" "))]));

/** The languages the check knows. */
export const LANGUAGES: readonly string[] = [...LISTS.keys()];

export interface LanguageOptions {
  language: string;
  minLatinShare: Threshold;
  minFunctionWordShare: Threshold;
}

export const LANGUAGE_DEFAULTS: Omit<LanguageOptions, "language"> = { minLatinShare: 0.5, minFunctionWordShare: 0.15 };

/** Each known language's share of function words among the text's words (lower-cased letter runs, "’"/"'" split). */
export function functionWordShares(text: string): Record<string, number> {
  const words = text.toLowerCase().match(/\p{L}+/gu) ?? [];
  const shares: Record<string, number> = {};
  for (const [lang, list] of LISTS) {
    let n = 0;
    for (const w of words) if (list.has(w)) n++;
    shares[lang] = words.length === 0 ? 0 : n / words.length;
  }
  return shares;
}

export function languageCheck(text: string, o: LanguageOptions): RuleOutcome {
  if (!LISTS.has(o.language)) throw new Error(`unknown language "${o.language}" (known: ${LANGUAGES.join(", ")})`);
  const letters = text.match(/\p{L}/gu)?.length ?? 0;
  if (letters === 0) return removalAt("language:no-letters", {});
  if (o.minLatinShare !== null) {
    const latin = (text.match(/\p{Script=Latin}/gu)?.length ?? 0) / letters;
    if (latin < o.minLatinShare) return removal("language:script", latin, o.minLatinShare);
  }
  const shares = functionWordShares(text);
  const mine = shares[o.language];
  const [best, bestShare] = Object.entries(shares).reduce((a, b) => (b[1] > a[1] ? b : a));
  if (bestShare > mine) return removal("language:other", mine, bestShare, { detail: { likely: best } });
  if (o.minFunctionWordShare !== null && mine < o.minFunctionWordShare) return removal("language:function-words", mine, o.minFunctionWordShare);
  return KEEP;
}
