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
    let mut prelude = String::from("(core module $t (table 1 funcref))\n");
    for _ in 1..instances {
        prelude.push_str("  (core instance (instantiate $t))\n");
    }
    component(
        &prelude,
        "",
        "(table 1 funcref)",
        "(loop $spin (br $spin)) (unreachable)",
        "",
    )
}

/// Loops on every item until the deadline stops it.
pub fn spinner() -> String {
    plugin("(loop $spin (br $spin)) (unreachable)")
}
