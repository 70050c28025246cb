;; classify: an IoT telemetry function for the nfaas `wasm` runtime (ABI: docs/wasm-abi.md).
;;
;; Input: one sensor reading, such as `temp=23.5` or `{"value": 42}`. The number is
;; read after the last '=' or ':' (or from the start when there is neither);
;; spaces and a sign may precede it, and only its integer part counts.
;; Output: `ok` below 50, `warn` from 50, `alarm` from 80.
;; A reading with no number is an error: the handler returns a negative value whose
;; low 63 bits point at the message "no number in reading".
(module
  (memory (export "memory") 1)

  (data (i32.const 16) "ok")
  (data (i32.const 24) "warn")
  (data (i32.const 32) "alarm")
  (data (i32.const 48) "no number in reading")

  ;; Every event's bytes start at $base; one event at a time, so the space is reused.
  (global $base i32 (i32.const 1024))

  (func (export "nfaas_alloc") (param $len i32) (result i32)
    (local $end i32)
    (local.set $end (i32.add (global.get $base) (local.get $len)))
    (if (i32.lt_u (local.get $end) (global.get $base))  ;; wrapped around: far too large
      (then unreachable))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then
        (if (i32.eq
              (memory.grow
                (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                         (memory.size)))
              (i32.const -1))
          (then unreachable))))
    (global.get $base))

  ;; (ptr << 32) | len: the ABI's encoding of a result span.
  (func $span (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))

  (func $is_digit (param $c i32) (result i32)
    (i32.lt_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 10)))

  (func (export "classify") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32)
    (local $end i32)
    (local $c i32)
    (local $negative i32)
    (local $value i32)
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))

    ;; Start just after the last '=' or ':', if any.
    (local.set $i (local.get $end))
    (block $found
      (loop $back
        (br_if $found (i32.le_u (local.get $i) (local.get $ptr)))
        (local.set $c (i32.load8_u (i32.sub (local.get $i) (i32.const 1))))
        (br_if $found (i32.or (i32.eq (local.get $c) (i32.const 61))    ;; '='
                              (i32.eq (local.get $c) (i32.const 58))))  ;; ':'
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (br $back)))

    ;; Skip spaces and tabs, then an optional sign.
    (block $text
      (loop $blank
        (br_if $text (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $c (i32.load8_u (local.get $i)))
        (br_if $text (i32.and (i32.ne (local.get $c) (i32.const 32))
                              (i32.ne (local.get $c) (i32.const 9))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $blank)))
    (if (i32.lt_u (local.get $i) (local.get $end))
      (then
        (local.set $c (i32.load8_u (local.get $i)))
        (if (i32.or (i32.eq (local.get $c) (i32.const 45)) (i32.eq (local.get $c) (i32.const 43)))
          (then
            (local.set $negative (i32.eq (local.get $c) (i32.const 45)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))))))

    ;; At least one digit, or the reading has no number.
    (if (i32.or (i32.ge_u (local.get $i) (local.get $end))
                (i32.eqz (call $is_digit (i32.load8_u (local.get $i)))))
      (then
        (return (i64.or (i64.const 0x8000000000000000) (call $span (i32.const 48) (i32.const 20))))))

    ;; The integer part, saturating well above the alarm threshold.
    (block $done
      (loop $digits
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $c (i32.load8_u (local.get $i)))
        (br_if $done (i32.eqz (call $is_digit (local.get $c))))
        (if (i32.lt_u (local.get $value) (i32.const 1000000))
          (then
            (local.set $value
              (i32.add (i32.mul (local.get $value) (i32.const 10))
                       (i32.sub (local.get $c) (i32.const 48))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $digits)))

    (if (local.get $negative)
      (then (return (call $span (i32.const 16) (i32.const 2)))))
    (if (i32.ge_u (local.get $value) (i32.const 80))
      (then (return (call $span (i32.const 32) (i32.const 5)))))
    (if (i32.ge_u (local.get $value) (i32.const 50))
      (then (return (call $span (i32.const 24) (i32.const 4)))))
    (call $span (i32.const 16) (i32.const 2))))
