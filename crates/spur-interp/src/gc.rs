//! The interpreter's side of the scavenger: when objects may move, and
//! what it passes and refreshes around a scavenge.
//!
//! Objects move only at a safe point: between two bytecodes, where the loop
//! checks for interrupts, so that no oop is held in a Rust local. Eden
//! allocation past the scavenge threshold still succeeds (eden keeps the
//! interpreter's allocation reserve beyond it), and an object eden cannot
//! hold at all is allocated in old space (as Cog allocates large objects);
//! either raises the memory's "scavenge wanted" flag, and the next check
//! scavenges. So no bytecode or primitive is ever cut in half by a
//! scavenge, and nothing needs retrying.
//!
//! The roots are the interpreter's registers (active context, method,
//! receiver) and the timer's semaphore, the only oop it keeps that the heap
//! may not reach. Everything else it derives from oops is re-derived
//! afterwards through [`Vm::after_become`]: the method and code caches are
//! flushed, the recycled contexts dropped (they may have moved), the active
//! context exposed, the special selectors re-read through their forwarders
//! (they are reachable from the special objects array, so they were
//! copied if young) and the active method's code reloaded.

use std::time::Instant;

use crate::interp::{memory_stop_kind, Stop, Vm, R};

impl Vm<'_> {
    /// Scavenges when the memory asks for it. Call only between bytecodes.
    #[inline]
    pub(crate) fn at_safe_point(&mut self) -> R<()> {
        if self.m.scavenge_wanted() {
            self.scavenge()?;
        }
        Ok(())
    }

    /// Scavenges new space now, with the registers as roots, and refreshes
    /// what the interpreter derived from oops.
    pub(crate) fn scavenge(&mut self) -> R<()> {
        let t0 = Instant::now();
        self.store_registers()?;
        if std::env::var_os("SPUR_GC_CHECK").is_some() {
            for f in self.m.check_young_refs(10) {
                eprintln!("before scavenge {}: {f}", self.m.gc_stats().scavenges);
            }
        }
        let mut roots = [
            self.ctx,
            self.method,
            self.receiver,
            self.timer.map_or(self.nil, |t| t.semaphore),
        ];
        if let Err(e) = self.m.scavenge(&mut roots) {
            // Out of memory, most likely: the line says it was a scavenge.
            let kind = memory_stop_kind(&e);
            return Err(Stop::Halt(kind, format!("scavenging new space: {e}")));
        }
        let [ctx, method, receiver, sem] = roots;
        (self.ctx, self.method, self.receiver) = (ctx, method, receiver);
        if let Some(t) = self.timer.as_mut() {
            t.semaphore = sem;
        }
        self.after_become()?;
        if std::env::var_os("SPUR_GC_CHECK").is_some() {
            for f in self.m.check_young_refs(10) {
                eprintln!("after scavenge {}: {f}", self.m.gc_stats().scavenges);
            }
        }
        self.stats.scavenge_us += u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        Ok(())
    }
}
