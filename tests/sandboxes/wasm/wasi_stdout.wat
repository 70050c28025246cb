;; wasi_stdout: writes a line to WASI stdout (fd 1) and returns "written".
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "hello from wasm\0a")
  (data (i32.const 96) "written")
  (data (i32.const 112) "fd_write failed")
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
    ;; one iovec at 0: {buf = 64, len = 16}; bytes written go to 32
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 16))
    (if (i32.ne (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 32)) (i32.const 0))
      (then (return (i64.or (i64.const 0x8000000000000000)
                            (i64.or (i64.shl (i64.const 112) (i64.const 32)) (i64.const 15))))))
    (i64.or (i64.shl (i64.const 96) (i64.const 32)) (i64.const 7))))
