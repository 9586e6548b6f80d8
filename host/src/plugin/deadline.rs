//! Call deadlines for the WASI functions that block in the host.
//!
//! Epoch interruption stops wasm code, not a host function the guest is
//! waiting in. In the WASI 0.2 worlds the host links, the only functions that
//! can wait are in `wasi:io`: `poll`, `pollable.block` (what
//! `std::thread::sleep` becomes: a monotonic-clock subscription, then
//! `block`), and the `blocking-*` stream methods. Everything else answers at
//! once: clocks and random return values, `subscribe-*` only makes a
//! pollable, stdin is empty (a read ends with `closed`), stdout and stderr go
//! to the guest log without waiting, and there are no files or sockets.
//!
//! So after `wasmtime_wasi::p2::add_to_linker_sync` the linker re-links those
//! functions ([`add_to_linker`], with shadowing) to the same asynchronous
//! implementations wasmtime-wasi runs, under `tokio::time::timeout_at` at the
//! current call's deadline ([`HostState::deadline`], set before every call
//! including `init`). At the deadline the guest gets a trap, the instance's
//! [`HostState::timed_out`] is set, and the call is reported as
//! [`PluginError::Timeout`](super::PluginError::Timeout).

use std::time::Instant;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::{poll as async_poll, streams as async_streams};
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, StreamError, StreamResult};
use wasmtime_wasi::runtime::in_tokio;

use super::state::HostState;

/// The error a blocking WASI call ends with at the call's deadline.
#[derive(Debug, thiserror::Error)]
#[error("the call's deadline passed while the plugin waited in a blocking WASI call")]
pub struct DeadlineExceeded;

/// The resource table and the deadline of the call in progress.
pub struct Bounded<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
    timed_out: &'a mut bool,
}

impl Bounded<'_> {
    /// Runs `f` on the table, giving up at the deadline.
    fn wait<R>(
        &mut self,
        f: impl AsyncFnOnce(&mut ResourceTable) -> R,
    ) -> Result<R, DeadlineExceeded> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let table = &mut *self.table;
        let out = in_tokio(async move { tokio::time::timeout_at(deadline, f(table)).await });
        out.map_err(|_| {
            *self.timed_out = true;
            DeadlineExceeded
        })
    }

    fn wait_stream<R>(
        &mut self,
        f: impl AsyncFnOnce(&mut ResourceTable) -> StreamResult<R>,
    ) -> StreamResult<R> {
        self.wait(f)
            .map_err(|e| StreamError::Trap(e.into()))
            .and_then(|r| r)
    }

    fn wait_result<R>(
        &mut self,
        f: impl AsyncFnOnce(&mut ResourceTable) -> wasmtime::Result<R>,
    ) -> wasmtime::Result<R> {
        self.wait(f)?
    }
}

struct BoundedIo;

impl HasData for BoundedIo {
    type Data<'a> = Bounded<'a>;
}

fn bounded(state: &mut HostState) -> Bounded<'_> {
    let (table, deadline, timed_out) = state.io_parts();
    Bounded {
        table,
        deadline,
        timed_out,
    }
}

/// Re-links `wasi:io/poll` and `wasi:io/streams` over the blocking versions
/// `add_to_linker_sync` linked.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    poll::add_to_linker::<HostState, BoundedIo>(linker, bounded)?;
    streams::add_to_linker::<HostState, BoundedIo>(linker, bounded)?;
    linker.allow_shadowing(false);
    Ok(())
}

impl poll::Host for Bounded<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        self.wait_result(async move |t| async_poll::Host::poll(t, pollables).await)
    }
}

impl poll::HostPollable for Bounded<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        self.wait_result(async move |t| async_poll::HostPollable::ready(t, pollable).await)
    }
    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        self.wait_result(async move |t| async_poll::HostPollable::block(t, pollable).await)
    }
    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(self.table, pollable)
    }
}

impl streams::Host for Bounded<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table, err)
    }
}

impl streams::HostOutputStream for Bounded<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        self.wait_result(async move |t| async_streams::HostOutputStream::drop(t, stream).await)
    }
    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.table, stream)
    }
    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.table, stream, bytes)
    }
    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        self.wait_stream(async move |t| {
            async_streams::HostOutputStream::blocking_write_and_flush(t, stream, bytes).await
        })
    }
    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table, stream)
    }
    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        self.wait_stream(async move |t| {
            async_streams::HostOutputStream::blocking_flush(t, stream).await
        })
    }
    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.table, stream)
    }
    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.table, stream, len)
    }
    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        self.wait_stream(async move |t| {
            async_streams::HostOutputStream::blocking_write_zeroes_and_flush(t, stream, len).await
        })
    }
    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table, dst, src, len)
    }
    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        self.wait_stream(async move |t| {
            async_streams::HostOutputStream::blocking_splice(t, dst, src, len).await
        })
    }
}

impl streams::HostInputStream for Bounded<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        self.wait_result(async move |t| async_streams::HostInputStream::drop(t, stream).await)
    }
    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, stream, len)
    }
    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        self.wait_stream(async move |t| {
            async_streams::HostInputStream::blocking_read(t, stream, len).await
        })
    }
    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, stream, len)
    }
    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        self.wait_stream(async move |t| {
            async_streams::HostInputStream::blocking_skip(t, stream, len).await
        })
    }
    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.table, stream)
    }
}
