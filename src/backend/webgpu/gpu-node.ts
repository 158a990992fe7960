// Node's WebGPU: Dawn's binding from the npm package `webgpu`, imported only here and only when
// the webgpu backend is asked for (it is an optional peer dependency, 130 MB with every platform).
let nodeInstance: GPU | null = null;

export async function nodeGpu(installHint: string): Promise<GPU> {
  if (typeof process === "undefined" || process.versions?.node === undefined)
    throw new Error("webgpu backend: this browser has no WebGPU (navigator.gpu is missing); use the wasm backend");
  let mod: { create(options: string[]): GPU };
  try {
    const name = "webgpu"; // a variable: bundlers and tsc leave the optional package alone
    mod = (await import(name)) as typeof mod;
  } catch (e) {
    throw new Error(`webgpu backend: the package \`webgpu\` is not installed (${(e as Error).message.split("\n")[0]}); ${installHint}`);
  }
  // One instance per process, held here: Dawn's instance pumps the device's events (map
  // callbacks), and once the object is collected its devices' promises never settle.
  nodeInstance ??= mod.create([]);
  return nodeInstance;
}
