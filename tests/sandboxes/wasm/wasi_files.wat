;; wasi_files: "handle" reads the file whose path is the event body from the first
;; preopened folder (fd 3); "create" tries to create that file. Either reports
;; "open failed" as an error when WASI refuses.
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "open failed")
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
  (func $failed (result i64)
    (i64.or (i64.const 0x8000000000000000)
            (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 11))))
  (func (export "handle") (param $ptr i32) (param $len i32) (result i64)
    ;; rights: fd_read (1 << 1); the new fd goes to 16
    (if (call $path_open (i32.const 3) (i32.const 0) (local.get $ptr) (local.get $len)
                         (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16))
      (then (return (call $failed))))
    ;; one iovec at 32: {buf = 8192, len = 4096}; bytes read go to 40
    (i32.store (i32.const 32) (i32.const 8192))
    (i32.store (i32.const 36) (i32.const 4096))
    (if (call $fd_read (i32.load (i32.const 16)) (i32.const 32) (i32.const 1) (i32.const 40))
      (then (return (call $failed))))
    (i64.or (i64.shl (i64.const 8192) (i64.const 32)) (i64.extend_i32_u (i32.load (i32.const 40)))))
  (func (export "create") (param $ptr i32) (param $len i32) (result i64)
    ;; oflags: creat (1); rights: fd_write (1 << 6)
    (if (call $path_open (i32.const 3) (i32.const 0) (local.get $ptr) (local.get $len)
                         (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 16))
      (then (return (call $failed))))
    (i64.const 0)))
