/* tslint:disable */
/* eslint-disable */

/**
 * A loaded model folder, bound to one backend.
 */
export class WebClassifier {
    private constructor();
    free(): void;
    [Symbol.dispose](): void;
    /**
     * Classify a picture (JPEG/PNG bytes) and/or a caption. Resolves to `{label, labels,
     * fused, image, text, backend, ms}`; rejects with a message on bad input.
     */
    classify(image?: Uint8Array | number[] | null, caption?: string | null): Promise<any>;
    /**
     * Build from the three files' bytes (see [`WebClassifier::load`] for `backend`).
     */
    static fromBytes(config: Uint8Array | number[], tokenizer: Uint8Array | number[], weights: Uint8Array | number[], backend: string): Promise<WebClassifier>;
    /**
     * Load the model folder at `base_url` (ending in `/`). `backend` is `"auto"` (WebGPU when
     * the browser has a hardware adapter, else CPU), `"webgpu"` or `"cpu"`. `progress(loaded, total)`
     * follows the weights download.
     */
    static load(base_url: string, backend: string, progress?: Function | null): Promise<WebClassifier>;
    /**
     * `"webgpu"` or `"cpu"`.
     */
    readonly backend: string;
    /**
     * Class names in output order.
     */
    readonly labels: string[];
}

export function start(): void;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_webclassifier_free: (a: number, b: number) => void;
    readonly start: () => void;
    readonly webclassifier_backend: (a: number) => [number, number];
    readonly webclassifier_classify: (a: number, b: number, c: number, d: number, e: number) => any;
    readonly webclassifier_fromBytes: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => any;
    readonly webclassifier_labels: (a: number) => [number, number];
    readonly webclassifier_load: (a: number, b: number, c: number, d: number, e: number) => any;
    readonly wasm_bindgen__convert__closures_____invoke__h060b9a02f6bc4f3d: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h10d3c3a2961776d2: (a: number, b: number, c: any, d: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h6366a4279a8f80f7: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h6366a4279a8f80f7_11: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h6366a4279a8f80f7_12: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h0965de6e32840309: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h0965de6e32840309_10: (a: number, b: number, c: any) => void;
    readonly __wbindgen_malloc_command_export: (a: number, b: number) => number;
    readonly __wbindgen_realloc_command_export: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free_command_export: (a: number, b: number, c: number) => void;
    readonly __externref_table_alloc_command_export: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __wbindgen_exn_store_command_export: (a: number) => void;
    readonly __wbindgen_destroy_closure_command_export: (a: number, b: number) => void;
    readonly __externref_drop_slice_command_export: (a: number, b: number) => void;
    readonly __externref_table_dealloc_command_export: (a: number) => void;
    readonly __wbindgen_start: () => void;
}

export type SyncInitInput = BufferSource | WebAssembly.Module;

/**
 * Instantiates the given `module`, which can either be bytes or
 * a precompiled `WebAssembly.Module`.
 *
 * @param {{ module: SyncInitInput }} module - Passing `SyncInitInput` directly is deprecated.
 *
 * @returns {InitOutput}
 */
export function initSync(module: { module: SyncInitInput } | SyncInitInput): InitOutput;

/**
 * If `module_or_path` is {RequestInfo} or {URL}, makes a request and
 * for everything else, calls `WebAssembly.instantiate` directly.
 *
 * @param {{ module_or_path: InitInput | Promise<InitInput> }} module_or_path - Passing `InitInput` directly is deprecated.
 *
 * @returns {Promise<InitOutput>}
 */
export default function __wbg_init (module_or_path?: { module_or_path: InitInput | Promise<InitInput> } | InitInput | Promise<InitInput>): Promise<InitOutput>;
