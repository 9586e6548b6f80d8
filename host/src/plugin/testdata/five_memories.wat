;; A component with five linear memories, one more than a plugin Store may
;; create (state.rs MAX_MEMORIES). Built like two_memories.wat.
(component
  (core module $m (memory (export "memory") 1))
  (core instance (instantiate $m))
  (core instance (instantiate $m))
  (core instance (instantiate $m))
  (core instance (instantiate $m))
  (core instance (instantiate $m)))
