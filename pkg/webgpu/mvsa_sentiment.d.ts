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
     * Classify one pair of a folder from its files' bytes, under the model crate's rule for
     * folders ([`Classifier::prepare_any`]): the caption decoded as the trainer reads the data
     * set, an empty one leaving the picture alone, an unreadable picture the caption alone,
     * each said in `notes`. Resolves to `classify`'s answer plus `caption`, the decoded text.
     */
    classifyPair(image?: Uint8Array | number[] | null, caption?: Uint8Array | number[] | null): Promise<any>;
    /**
     * Classify a picture (JPEG/PNG bytes) and/or a caption. Resolves to `{label, labels,
     * fused, image, text, backend, ms}`; rejects with a message on bad input.
     */
    classify(image?: Uint8Array | number[] | null, caption?: string | null): Promise<any>;
    /**
     * Build from a model folder's files: `files` maps each file name (`config.json`, …) to
     * its bytes, as the page downloaded the files its manifest lists.
     */
    static create(files: object, backend: string): Promise<WebClassifier>;
    /**
     * Why the model decided (occlusion): `{labels, fused, words: [{before, word, effect}],
     * picture: {width, height, crop, rows, cols, cells}}`, each effect the fall in each
     * label's fused probability when that word, or that cell of a `grid` x `grid` split of
     * the picture, is hidden.
     */
    explain(image: Uint8Array | number[] | null | undefined, caption: string | null | undefined, grid: number): Promise<any>;
    /**
     * Build from the folder's files' bytes (`tokenizer` may be absent for a picture-only
     * model).
     */
    static fromBytes(config: Uint8Array | number[], tokenizer: Uint8Array | number[] | null | undefined, weights: Uint8Array | number[], backend: string): Promise<WebClassifier>;
    /**
     * Decode a picture the way `classify` will, without running the model: `{width,
     * height}`, or an error in plain words (not a picture, damaged, too large). The page
     * checks a file with it as soon as it is chosen.
     */
    inspect(image: Uint8Array | number[]): any;
    /**
     * One pass of the pretrained encoders operation by operation, as `bench --profile` does
     * natively: `{image: {operation: ms}, text: {...}}`, each operation's time summed over
     * the pass (an encoder trained from scratch is left out). For the benchmark's `?ops=1`.
     */
    profileOperations(image?: Uint8Array | number[] | null, caption?: string | null): any;
    /**
     * Classify one pair stage by stage, reading each stage's result back before the next
     * starts: `{preprocess, image_encoder, text_encoder, heads}` in milliseconds (for the
     * benchmark; `classify` does not wait between stages).
     */
    profile(image?: Uint8Array | number[] | null, caption?: string | null): Promise<any>;
    /**
     * Run synthetic inputs through every kernel a classification can need (on WebGPU, each
     * caption length bucket once: shader compilation happens here, not on the user's first
     * classification), then time two more warm classifications. Resolves to
     * `{first_ms, warm_ms}`: the warm-up itself, and the faster warm run (what the page
     * compares backends by).
     */
    warmUp(): Promise<any>;
    /**
     * `"webgpu"` or `"cpu"`.
     */
    readonly backend: string;
    /**
     * Class names in output order.
     */
    readonly labels: string[];
    /**
     * `{maxCaptionBytes, maxSide, maxFileBytes, formats}`: the longest caption in UTF-8 bytes,
     * the largest picture side (absent for a model without that branch), the largest picture
     * file, and the picture formats read.
     */
    readonly limits: any;
}

/**
 * Whether this build can run on WebGPU.
 */
export function hasWebGpu(): boolean;

/**
 * Does nothing: the browser benchmark times calls into the module with it.
 */
export function noop(): void;

/**
 * Runs when the module is initialised (tests, which skip start functions, call it first).
 */
export function start(): void;

/**
 * How many threads the CPU kernels run on: 1 in the single-threaded build, the pool's size in
 * the threaded one once `initThreadPool` has started it.
 */
export function threads(): number;

export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;

export interface InitOutput {
    readonly memory: WebAssembly.Memory;
    readonly __wbg_webclassifier_free: (a: number, b: number) => void;
    readonly hasWebGpu: () => number;
    readonly noop: () => void;
    readonly start: () => void;
    readonly threads: () => number;
    readonly webclassifier_backend: (a: number) => [number, number];
    readonly webclassifier_classify: (a: number, b: number, c: number, d: number, e: number) => any;
    readonly webclassifier_classifyPair: (a: number, b: number, c: number, d: number, e: number) => any;
    readonly webclassifier_create: (a: any, b: number, c: number) => any;
    readonly webclassifier_explain: (a: number, b: number, c: number, d: number, e: number, f: number) => any;
    readonly webclassifier_fromBytes: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => any;
    readonly webclassifier_inspect: (a: number, b: number, c: number) => [number, number, number];
    readonly webclassifier_labels: (a: number) => [number, number];
    readonly webclassifier_limits: (a: number) => [number, number, number];
    readonly webclassifier_profile: (a: number, b: number, c: number, d: number, e: number) => any;
    readonly webclassifier_profileOperations: (a: number, b: number, c: number, d: number, e: number) => [number, number, number];
    readonly webclassifier_warmUp: (a: number) => any;
    readonly wasm_bindgen__convert__closures_____invoke__h097d6bffa66194c4: (a: number, b: number, c: any, d: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h1bfe8640f00e134a: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h1bfe8640f00e134a_21: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h1bfe8640f00e134a_22: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__ha940df5b8aa831b9: (a: number, b: number, c: any) => [number, number];
    readonly wasm_bindgen__convert__closures_____invoke__h78667f544401e0a7: (a: number, b: number, c: any) => void;
    readonly wasm_bindgen__convert__closures_____invoke__h78667f544401e0a7_20: (a: number, b: number, c: any) => void;
    readonly __wbindgen_malloc: (a: number, b: number) => number;
    readonly __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
    readonly __wbindgen_free: (a: number, b: number, c: number) => void;
    readonly __wbindgen_exn_store: (a: number) => void;
    readonly __externref_table_alloc: () => number;
    readonly __wbindgen_externrefs: WebAssembly.Table;
    readonly __wbindgen_destroy_closure: (a: number, b: number) => void;
    readonly __externref_table_dealloc: (a: number) => void;
    readonly __externref_drop_slice: (a: number, b: number) => void;
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
