/* tslint:disable */
/* eslint-disable */
export const memory: WebAssembly.Memory;
export const __wbg_webclassifier_free: (a: number, b: number) => void;
export const start: () => void;
export const webclassifier_backend: (a: number) => [number, number];
export const webclassifier_classify: (a: number, b: number, c: number, d: number, e: number) => any;
export const webclassifier_fromBytes: (a: number, b: number, c: number, d: number, e: number, f: number, g: number, h: number) => any;
export const webclassifier_labels: (a: number) => [number, number];
export const webclassifier_load: (a: number, b: number, c: number, d: number, e: number) => any;
export const wasm_bindgen__convert__closures_____invoke__h060b9a02f6bc4f3d: (a: number, b: number, c: any) => [number, number];
export const wasm_bindgen__convert__closures_____invoke__h10d3c3a2961776d2: (a: number, b: number, c: any, d: any) => void;
export const wasm_bindgen__convert__closures_____invoke__h6366a4279a8f80f7: (a: number, b: number, c: any) => [number, number];
export const wasm_bindgen__convert__closures_____invoke__h6366a4279a8f80f7_11: (a: number, b: number, c: any) => [number, number];
export const wasm_bindgen__convert__closures_____invoke__h6366a4279a8f80f7_12: (a: number, b: number, c: any) => [number, number];
export const wasm_bindgen__convert__closures_____invoke__h0965de6e32840309: (a: number, b: number, c: any) => void;
export const wasm_bindgen__convert__closures_____invoke__h0965de6e32840309_10: (a: number, b: number, c: any) => void;
export const __wbindgen_malloc_command_export: (a: number, b: number) => number;
export const __wbindgen_realloc_command_export: (a: number, b: number, c: number, d: number) => number;
export const __wbindgen_free_command_export: (a: number, b: number, c: number) => void;
export const __externref_table_alloc_command_export: () => number;
export const __wbindgen_externrefs: WebAssembly.Table;
export const __wbindgen_exn_store_command_export: (a: number) => void;
export const __wbindgen_destroy_closure_command_export: (a: number, b: number) => void;
export const __externref_drop_slice_command_export: (a: number, b: number) => void;
export const __externref_table_dealloc_command_export: (a: number) => void;
export const __wbindgen_start: () => void;
