/* tslint:disable */
/* eslint-disable */
export const memory: WebAssembly.Memory;
export const __wbg_webclassifier_free: (a: number, b: number) => void;
export const hasWebGpu: () => number;
export const noop: () => void;
export const start: () => void;
export const webclassifier_backend: (a: number) => [number, number];
export const webclassifier_classify: (a: number, b: number, c: number, d: number, e: number) => any;
export const webclassifier_create: (a: any, b: number, c: number) => any;
export const webclassifier_fromBytes: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => any;
export const webclassifier_labels: (a: number) => [number, number];
export const webclassifier_profile: (a: number, b: number, c: number, d: number, e: number) => any;
export const webclassifier_warmUp: (a: number) => any;
export const wasm_bindgen__convert__closures_____invoke__h0531fd743f4bc429: (a: number, b: number, c: any) => [number, number];
export const wasm_bindgen__convert__closures_____invoke__h8c223939539c9d7c: (a: number, b: number, c: any, d: any) => void;
export const __wbindgen_malloc: (a: number, b: number) => number;
export const __wbindgen_realloc: (a: number, b: number, c: number, d: number) => number;
export const __wbindgen_free: (a: number, b: number, c: number) => void;
export const __wbindgen_exn_store: (a: number) => void;
export const __externref_table_alloc: () => number;
export const __wbindgen_externrefs: WebAssembly.Table;
export const __wbindgen_destroy_closure: (a: number, b: number) => void;
export const __externref_drop_slice: (a: number, b: number) => void;
export const __externref_table_dealloc: (a: number) => void;
export const __wbindgen_start: () => void;
