;; A hostile component for the memory-cap test (plugin/state.rs): two core
;; modules with one linear memory each, so each memory can stay under a
;; per-memory cap while the two together pass it. Built into
;; two_memories.wasm with `wasm-tools parse two_memories.wat -o two_memories.wasm`
;; (checked in, so the tests need no wasm-tools).
(component
  (core module $m
    (memory (export "memory") 1)
    (func (export "grow") (param i32) (result i32)
      (memory.grow (local.get 0))))
  (core instance $a (instantiate $m))
  (core instance $b (instantiate $m))
  (func (export "grow-a") (param "pages" u32) (result s32)
    (canon lift (core func $a "grow")))
  (func (export "grow-b") (param "pages" u32) (result s32)
    (canon lift (core func $b "grow"))))
