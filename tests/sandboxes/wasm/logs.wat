;; logs: writes the event body to the platform log with nfaas.log, then echoes it.
(module
  (import "nfaas" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  ;; nfaas_alloc: one event at a time, so every event starts at $base (growing memory as needed).
  (global $base i32 (i32.const 4096))
  (func (export "nfaas_alloc") (param $len i32) (result i32)
    (local $end i32)
    (local.set $end (i32.add (global.get $base) (local.get $len)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq
              (memory.grow (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                                    (memory.size)))
              (i32.const -1))
          (then unreachable))))
    (global.get $base))
  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    (call $log (local.get $ptr) (local.get $len))
    ;; a span past the end of memory is cut, not fatal
    (call $log (i32.const 65530) (i32.const 100))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len)))))
