// Helpers of the tests for the asynchronous API (no top-level side effects: node --test loads every file here).

/** Every value of an async iterable, in order (Array.fromAsync is not in Node 20). */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
