;; loops: never returns; only fuel or the epoch deadline ends it.
(module
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
    (loop $forever (br $forever))
    (i64.const 0)))
