// The templates `bonsai data synth --template NAME` ships (format: template.ts). Modules rather
// than files, so that they load in a browser too; `--print-template NAME` writes one out as a
// starting point for your own.

/**
 * TinyStories (Eldan & Li, 2023, "TinyStories: How Small Can Language Models Be and Still Speak
 * Coherent English?"): the paper's prompt, with a verb, a noun and an adjective from the
 * vocabulary and a random subset of its six story features, phrased as the dataset's
 * instructions phrase them. The default.
 */
export const TINYSTORIES_TEMPLATE = `# The TinyStories recipe: three words from the vocabulary and a random subset of story features.
@feature dialogue: the story should contain at least one dialogue
@feature twist: something unexpected happens / there is a plot twist
@feature moral: the story has a moral value
@feature bad-ending: the story has a bad ending
@feature foreshadowing: the narrative uses foreshadowing or setup and payoff
@feature conflict: the story has some form of conflict in it
---
Write a short story (3-5 paragraphs) which only uses very simple words that a 3 year old child would likely understand. \
The story should use the verb "{verb}", the noun "{noun}" and the adjective "{adjective}".\
[[ The story should have the following features: {features:0-3}.]] Remember to only use simple words!
`;

/**
 * For a base model (no chat template) trained on stories, which continues text rather than
 * following instructions: an opening with the three drawn words, worded to read right whatever
 * they are; the record holds the opening and its continuation.
 */
export const STORY_OPENING_TEMPLATE = `# For base (non-chat) teachers: a story opening with three drawn words, which the model continues.
@text prompt+completion
---
Once upon a time, a little child liked to {verb}. One day, the child found something {adjective} near the {noun}.
`;

// phi-1 ("Textbooks Are All You Need", Gunasekar et al., 2023) made its synthetic textbooks and
// exercises diverse by constraining each prompt with drawn topics and target audiences.
const PYTHON_TOPICS = [
  "variables and assignment", "integer and float arithmetic", "string formatting", "string slicing", "string methods",
  "if statements", "boolean logic", "for loops", "while loops", "nested loops", "functions and return values",
  "default and keyword arguments", "recursion", "lists", "list comprehensions", "tuples", "dictionaries",
  "sets", "sorting with a key", "searching a list", "binary search", "stacks", "queues", "counting with a dictionary",
  "two-dimensional lists", "string parsing", "reading numbers from text", "error handling with try and except",
  "classes and objects", "methods and attributes", "inheritance", "iterators", "generators", "the enumerate and zip functions",
  "the built-in functions min and max", "prime numbers", "greatest common divisor", "Fibonacci numbers", "factorials", "palindromes",
  "anagrams", "run-length encoding", "matrix addition", "running totals", "averages and medians", "rounding and integer division",
  "the modulo operator", "date and time arithmetic", "simple simulations with random numbers", "merging sorted lists",
  "removing duplicates", "frequency tables", "flattening nested lists", "validating input", "unit conversions",
].join(", ");
const AUDIENCES = ["a beginner programmer", "a high school student", "a first-year computer science student", "a self-taught programmer", "a data analyst learning Python", "a middle school student in a coding club"].join(", ");
const DOMAINS = [
  "a grocery list", "a school timetable", "weather temperatures", "a library's books", "a bank account", "game scores",
  "a to-do list", "a recipe's ingredients", "train timetables", "a zoo's animals", "student grades", "a shop's inventory",
  "a music playlist", "a sports league table", "text messages", "a garden's plants", "a parking lot", "a board game",
  "a phone book", "a fitness tracker", "a movie catalogue", "a classroom seating plan", "a bakery's orders", "a map of cities",
].join(", ");
const CONCEPTS = ["a dictionary", "a list comprehension", "a while loop", "recursion", "a helper function", "sorting", "a set", "string methods", "a generator", "a class"].join(", ");

/** phi-1's CodeExercises style: a Python function's signature and docstring with its solution and tests. */
export const TEXTBOOK_EXERCISE_TEMPLATE = `# phi-1-style textbook exercises: a function's signature and docstring, its solution, and tests.
@words topic: ${PYTHON_TOPICS}
@words audience: ${AUDIENCES}
@words domain: ${DOMAINS}
@words concept: ${CONCEPTS}
---
Write one exercise of a Python textbook for {audience}. The exercise is about {topic}, set in the context of {domain}.\
[[ Its solution should use {concept:0-1}.]] Write it as one Python function: its signature with type hints, then a docstring \
that states the task precisely and gives one example call with its result, then a correct and clear solution. After the \
function, write three assert statements that test it. Write only Python code.
`;

/** phi-1's synthetic textbook style: a section that explains a topic in prose and short code examples. */
export const TEXTBOOK_TEMPLATE = `# phi-1-style synthetic textbook sections: a topic explained in clear prose and short code examples.
@words topic: ${PYTHON_TOPICS}
@words audience: ${AUDIENCES}
@words domain: ${DOMAINS}
---
Write a section of a Python textbook for {audience} on {topic}. Explain the idea in clear, simple prose, then show it in \
short, correct code examples, each followed by a sentence that says what it prints or does, and end with a short summary.\
[[ Use examples about {domain:0-1}.]]
`;

/** The shipped templates by name; "tinystories" is the default. */
export const BUILTIN_TEMPLATES: Readonly<Record<string, string>> = {
  tinystories: TINYSTORIES_TEMPLATE,
  "story-opening": STORY_OPENING_TEMPLATE,
  "textbook-exercise": TEXTBOOK_EXERCISE_TEMPLATE,
  textbook: TEXTBOOK_TEMPLATE,
};
