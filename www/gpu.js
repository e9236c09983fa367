// What the browser's WebGPU adapter is, asked the same way by the page (before it offers to
// load a model on WebGPU) and by its worker (before `auto` tries WebGPU).

/**
 * {kind: "hardware", name} where WebGPU is worth trying; {kind: "software", name, why} for a
 * software fallback (SwiftShader: minutes to load, seconds an answer); {kind: "none", why}
 * where there is no adapter at all.
 */
export async function adapterInfo() {
  if (!navigator.gpu) return { kind: "none", why: "this browser has no WebGPU" };
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { kind: "none", why: "this browser has no WebGPU adapter" };
    const info = adapter.info ?? {};
    const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "unnamed";
    if (info.isFallbackAdapter ?? adapter.isFallbackAdapter ?? false) {
      return { kind: "software", name, why: `the WebGPU adapter (${name}) is a software fallback, far slower than the CPU` };
    }
    return { kind: "hardware", name };
  } catch (e) {
    return { kind: "none", why: `WebGPU is unavailable here (${e instanceof Error ? e.message : e})` };
  }
}
