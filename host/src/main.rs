//! The `pipehost` binary. Everything but the process allocator lives in
//! the library (`pipehost::cli`).

#![deny(unsafe_code)]

// jemalloc, tuned to hand freed memory back. A saturated run moves batches
// of megabytes between many threads (tokio workers, the blocking threads
// plugins and SQLite run on); under glibc malloc its resident set grew to
// ~480 MiB for at most ~75 MiB live, each thread's arena keeping what it had
// once held, and malloc/free took a fifth of the CPU profile. jemalloc with
// one arena per CPU (not per thread: dozens of blocking threads come and
// go) and a background thread purging dirty pages after 100 ms keeps the
// resident set near the live heap (~135 MiB) and is faster. (Vector, which pipehost
// follows in layout, ships jemalloc too.) `_RJEM_MALLOC_CONF` in the
// environment still overrides these settings. See BENCHMARKS.md.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's compiled-in options (a C string it reads at start-up).
#[allow(
    unsafe_code,
    reason = "jemalloc reads its options from this exported symbol"
)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 =
    &b"percpu_arena:percpu,background_thread:true,dirty_decay_ms:100,muzzy_decay_ms:0\0"[0];

fn main() -> std::process::ExitCode {
    pipehost::cli::main()
}
