;; triple_wat: 3 * item, written by hand in the WebAssembly text format - no SDK, no compiler,
;; no Rust - to show that the plugin interface (plugins/wit/plugin.wit) is language-neutral.
;; The worker loads `.wat` files as they are.
;;
;; The canonical ABI of `process: func(item: u64) -> result<u64, string>`, lowered:
;; the core function takes the item as an i64 and returns a pointer to a 16-byte return area:
;; byte 0 is the case (0 = ok, 1 = error); an ok u64 is at offset 8; an error string is a
;; (pointer, length) pair of i32 at offsets 8 and 12, in the module's memory.
(component
  (core module $impl
    (memory (export "memory") 1)
    (data (i32.const 64) "tripling overflows u64")
    (func (export "process") (param $item i64) (result i32)
      ;; u64::MAX / 3: anything larger overflows when tripled.
      (if (i64.gt_u (local.get $item) (i64.const 6148914691236517205))
        (then
          (i32.store8 (i32.const 0) (i32.const 1))
          (i32.store (i32.const 8) (i32.const 64))
          (i32.store (i32.const 12) (i32.const 22))
          (return (i32.const 0))))
      (i32.store8 (i32.const 0) (i32.const 0))
      (i64.store (i32.const 8) (i64.mul (local.get $item) (i64.const 3)))
      (i32.const 0)))
  (core instance $i (instantiate $impl))
  (func $process (param "item" u64) (result (result u64 (error string)))
    (canon lift (core func $i "process") (memory (core memory $i "memory"))))
  (instance $compute (export "process" (func $process)))
  (export "batch:plugin/compute@1.0.0" (instance $compute)))
