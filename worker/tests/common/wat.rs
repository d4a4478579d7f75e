//! Hand-written plugin components in WebAssembly text, for hostile fixtures the Rust compiler
//! would not produce. Shared by the worker's tests and the end-to-end tests (`#[path]`).

#![allow(dead_code, unreachable_pub)]

/// A component exporting `batch:plugin/compute@1.0.0` whose `process` is `body`: a core
/// function body (locals first) that leaves the address of its result on the stack. The core
/// module has a one-page memory, then `imports` and `extra` declarations; `prelude` holds
/// component items before it, and `with` the module's instantiation arguments.
pub fn component(prelude: &str, imports: &str, extra: &str, body: &str, with: &str) -> String {
    format!(
        r#"(component
  {prelude}
  (core module $m
    {imports}
    (memory (export "memory") 1)
    {extra}
    (func (export "process") (param $item i64) (result i32) {body}))
  (core instance $i (instantiate $m {with}))
  (func $process (param "item" u64) (result (result u64 (error string)))
    (canon lift (core func $i "process") (memory (core memory $i "memory"))))
  (instance $c (export "process" (func $process)))
  (export "batch:plugin/compute@1.0.0" (instance $c)))"#
    )
}

/// [`component`] with only a body.
pub fn plugin(body: &str) -> String {
    component("", "", "", body, "")
}

/// Creates `instances` core instances in all (each with a table), then loops until stopped.
pub fn hog(instances: u32) -> String {
    component(
        &tables_in_instances(instances - 1),
        "",
        "(table 1 funcref)",
        "(loop $spin (br $spin)) (unreachable)",
        "",
    )
}

/// Component items creating `count` core instances, each with a table (beside the plugin's
/// own instance and table).
fn tables_in_instances(count: u32) -> String {
    let mut items = String::from("(core module $t (table 1 funcref))\n");
    for _ in 0..count {
        items.push_str("  (core instance (instantiate $t))\n");
    }
    items
}

/// Loops on every item until the deadline stops it.
pub fn spinner() -> String {
    plugin("(loop $spin (br $spin)) (unreachable)")
}

/// A component exporting `batch:plugin/compute@2.0.0` and importing WASI (`wasi:random`'s
/// `get-random-u64`, as core function `$random`), whose `process` is `body`: a core function
/// body (locals first, parameters `$items` and `$len`) that leaves the address of its result
/// (a list pointer and length) on the stack, or calls `$one_zero` to answer one `number(0)`.
/// `configure` accepts anything. `prelude`, `imports`, `extra` and `with` as in [`component`].
pub fn component_v2_wasi(
    prelude: &str,
    imports: &str,
    extra: &str,
    body: &str,
    with: &str,
) -> String {
    format!(
        r#"(component
  (import "wasi:random/random@0.2.0" (instance $wasi_random
    (export "get-random-u64" (func (result u64)))))
  (core func $random (canon lower (func $wasi_random "get-random-u64")))
  {prelude}
  (core module $m
    (import "wasi" "random" (func $random (result i64)))
    {imports}
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 4096))
    {extra}
    ;; A bump allocator above the first page's low addresses, which hold the results below.
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and (i32.add (global.get $next) (i32.const 7)) (i32.const -8)))
      (global.set $next (i32.add (local.get $at) (local.get 3)))
      (if (i32.gt_u (global.get $next) (i32.mul (memory.size) (i32.const 65536)))
        (then (unreachable)))
      (local.get $at))
    ;; result<_, string> at address 0: ok (all zeros).
    (func (export "configure") (param i32 i32 i32) (result i32) (i32.const 0))
    ;; A list of one result<output, string> (24 zero bytes at 16: ok(number(0))), its pointer
    ;; and length at 0.
    (func $one_zero (result i32)
      (i32.store (i32.const 0) (i32.const 16))
      (i32.store (i32.const 4) (i32.const 1))
      (i32.const 0))
    (func (export "process") (param $items i32) (param $len i32) (result i32) {body}))
  (core instance $i (instantiate $m
    (with "wasi" (instance (export "random" (func $random))))
    {with}))
  (type $item (record (field "index" u64) (field "data" (option (list u8)))))
  (type $output (variant (case "number" u64) (case "record" (list u8)) (case "skip")))
  (func $configure (param "config" (option string)) (result (result (error string)))
    (canon lift (core func $i "configure") (memory (core memory $i "memory"))
      (realloc (core func $i "cabi_realloc"))))
  (func $process (param "items" (list $item)) (result (list (result $output (error string))))
    (canon lift (core func $i "process") (memory (core memory $i "memory"))
      (realloc (core func $i "cabi_realloc"))))
  (instance $c
    (export "item" (type $item))
    (export "output" (type $output))
    (export "configure" (func $configure))
    (export "process" (func $process)))
  (export "batch:plugin/compute@2.0.0" (instance $c)))"#
    )
}

/// [`hog`] as a v2 plugin that imports WASI (and asks it for a random number first).
pub fn hog_v2_wasi(instances: u32) -> String {
    component_v2_wasi(
        &tables_in_instances(instances - 1),
        "",
        "(table 1 funcref)",
        "(drop (call $random)) (loop $spin (br $spin)) (unreachable)",
        "",
    )
}

/// A v2 plugin that imports WASI and refuses every item with 6 MiB of `x`: one result per call
/// (so a block of one item, as in `item` mode).
pub fn flood_v2_wasi() -> String {
    component_v2_wasi(
        "",
        "",
        "",
        r#"(drop (call $random))
      (drop (memory.grow (i32.const 100)))
      (memory.fill (i32.const 65536) (i32.const 120) (i32.const 6291456))
      ;; err(string): discriminant 1, then the string's pointer and length at offset 8.
      (i32.store8 (i32.const 16) (i32.const 1))
      (i32.store (i32.const 24) (i32.const 65536))
      (i32.store (i32.const 28) (i32.const 6291456))
      (i32.store (i32.const 0) (i32.const 16))
      (i32.store (i32.const 4) (i32.const 1))
      (i32.const 0)"#,
        "",
    )
}

/// A v2 plugin that imports WASI and answers every call with `records` records that all point
/// at one buffer of `buffer_bytes` in its memory: what it holds is one buffer, what lifting its
/// results would copy is `records` of them.
pub fn aliasing_v2_wasi(records: u32, buffer_bytes: u32) -> String {
    let pages = buffer_bytes.div_ceil(65_536);
    component_v2_wasi(
        "",
        "",
        "",
        &format!(
            r#"(local $i i32) (local $at i32)
      (drop (call $random))
      (drop (memory.grow (i32.const {pages})))
      ;; Each result<output, string> is 24 bytes from 16 on: ok (0), record (1 at +8), the
      ;; list's pointer (+16) and length (+20), every one the same buffer at 65536.
      (block $done
        (loop $fill
          (br_if $done (i32.ge_u (local.get $i) (i32.const {records})))
          (local.set $at (i32.add (i32.const 16) (i32.mul (local.get $i) (i32.const 24))))
          (i32.store8 (local.get $at) (i32.const 0))
          (i32.store8 (i32.add (local.get $at) (i32.const 8)) (i32.const 1))
          (i32.store (i32.add (local.get $at) (i32.const 16)) (i32.const 65536))
          (i32.store (i32.add (local.get $at) (i32.const 20)) (i32.const {buffer_bytes}))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $fill)))
      (i32.store (i32.const 0) (i32.const 16))
      (i32.store (i32.const 4) (i32.const {records}))
      (i32.const 0)"#
        ),
        "",
    )
}
