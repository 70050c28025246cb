;; broken: not even valid WAT.
(module
  (memory (export "memory") 1)
  (func (export "handle") (param i32 i32) (result i64)
    (i64.add (i32.const 1)))
  this is not wat
