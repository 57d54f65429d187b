//! The external semaphore table as the interpreter sees it: signals
//! recorded by other threads (through the runtime's [`Signaller`]) become
//! signals of the Semaphores the ExternalObjectsArray holds, at the next
//! check of the clock, or at once when the interpreter is waiting.
//!
//! [`Signaller`]: spur_runtime::Signaller

use std::time::{Duration, Instant};

/// How often a wait for an external signal looks whether anybody can still
/// send one.
const RECHECK: Duration = Duration::from_millis(100);

use spur_runtime::special_objects::index as so;

use crate::interp::{Stop, StopKind, Vm, R};
use crate::mem::Oop;

impl Vm<'_> {
    /// The Semaphores the external semaphore table was signalled for since
    /// the last look, once per signal (from the ExternalObjectsArray as the
    /// image holds it now; indices it does not hold are dropped).
    pub fn external_signals(&mut self) -> Vec<Oop> {
        let mut fired = Vec::new();
        if !self.signals.any_pending() {
            return fired;
        }
        let array = self.m.special(so::EXTERNAL_OBJECTS_ARRAY);
        let (m, nil) = (&*self.m, self.nil);
        self.signals.drain(|i, n| {
            if let Ok(sem) = m.fetch(array, i as u64 - 1) {
                if sem != nil && !sem.is_immediate(m.word()) {
                    fired.extend(std::iter::repeat_n(sem, n as usize));
                }
            }
        });
        fired
    }

    /// Waits for an external signal when another thread may still send
    /// one (bounded by the run's deadline); `false` at once when none can.
    pub fn wait_for_signal(&mut self) -> R<bool> {
        loop {
            // Who else holds the table is read first: once nobody does, no
            // signal can come any more, so what is pending then is all there
            // will be (a signaller that signalled and let go is not missed).
            // The fence orders that read before the look at the pending
            // flag, which the signaller set before letting go.
            let alone = self.signals.others() == 0;
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            if self.signals.any_pending() {
                return Ok(true);
            }
            if alone {
                return Ok(false);
            }
            let now = Instant::now();
            // A signal unparks this thread; a signaller that lets go without
            // signalling does not, so the wait looks again now and then.
            let wait = match self.deadline {
                Some(d) if now >= d => {
                    return Err(Stop::Halt(
                        StopKind::Timeout,
                        format!(
                            "the timeout of {:.1} s, waiting for an external signal",
                            self.opts.timeout.unwrap_or_default().as_secs_f64()
                        ),
                    ))
                }
                Some(d) => (d - now).min(RECHECK),
                None => RECHECK,
            };
            std::thread::park_timeout(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use spur_format::raw::FMT_INDEXABLE;
    use spur_format::WordSize;
    use spur_runtime::special_objects::index as so;

    use crate::interp::{Prim, Stop, Timer, Vm};
    use crate::{Options, StopKind};

    /// How a call that must stop the run stopped.
    fn stop_kind<T: std::fmt::Debug>(r: Result<T, Stop>) -> (StopKind, String) {
        match r {
            Err(Stop::Halt(kind, line)) => (kind, line),
            other => panic!("the run goes on: {other:?}"),
        }
    }

    #[test]
    fn a_run_with_nothing_left_to_do_stops_idle() {
        let mut rt = crate::test_vm::runtime(WordSize::W64);
        let mut vm = Vm::new(&mut rt, &Options::default()).unwrap();
        // The idle process relinquishing the processor (primitive 230)
        // with no timer pending and nobody else holding the semaphore
        // table: nothing will ever run again.
        let method = vm.method;
        let us = vm.int(1000);
        vm.push(us).unwrap();
        let (kind, line) = stop_kind(vm.primitive(230, 1, method));
        assert_eq!(kind, StopKind::Idle, "{line}");
        assert!(line.contains("no timer is pending"), "{line}");
        vm.pop_n(1).unwrap();
        // With a timer pending it sleeps (here: not in real time) and goes on.
        let sem = vm.new_array(3).unwrap();
        vm.timer = Some(Timer {
            semaphore: sem,
            at: std::time::Instant::now(),
        });
        let us = vm.int(1000);
        vm.push(us).unwrap();
        assert!(matches!(vm.primitive(230, 1, method), Ok(Prim::Done)));
        vm.pop_n(1).unwrap();
        // The active process waiting on a semaphore nothing will signal:
        // the builder's idle process runs, and its relinquishing, with no
        // timer, stops the run idle.
        vm.timer = None;
        let sem = vm.new_array(3).unwrap();
        let zero = vm.int(0);
        vm.m.store(sem, 2, zero).unwrap();
        let waiting = vm.active_process().unwrap();
        vm.wait(sem).unwrap();
        assert_ne!(vm.active_process().unwrap(), waiting);
        assert_eq!(vm.stats.process_switches, 1);
        assert_eq!(vm.m.fetch(sem, 0).unwrap(), waiting);
        let method = vm.method;
        let us = vm.int(1000);
        vm.push(us).unwrap();
        let (kind, _) = stop_kind(vm.primitive(230, 1, method));
        assert_eq!(kind, StopKind::Idle);
        // With no process runnable at all, a wait stops idle at once.
        let lists = vm.m.fetch(vm.scheduler().unwrap(), 0).unwrap();
        let nil = vm.nil;
        for i in 0..vm.m.num_slots(lists).unwrap() {
            let list = vm.m.fetch(lists, i).unwrap();
            vm.m.store(list, 0, nil).unwrap();
            vm.m.store(list, 1, nil).unwrap();
        }
        let (kind, line) = stop_kind(vm.wait(sem));
        assert_eq!(kind, StopKind::Idle, "{line}");
        assert!(line.contains("no process is runnable"), "{line}");
    }

    #[test]
    fn a_signal_from_another_thread_wakes_the_waiting_interpreter() {
        let mut rt = crate::test_vm::runtime(WordSize::W64);
        let mut vm = Vm::new(&mut rt, &Options::default()).unwrap();
        // Nobody else holds the table: waiting would never end, so it does not wait.
        assert!(!vm.wait_for_signal().unwrap());
        // An ExternalObjectsArray whose entry 2 is an object to signal.
        let array = vm.m.allocate_slots(vm.ci_array, FMT_INDEXABLE, 4).unwrap();
        let target = vm.new_array(1).unwrap();
        vm.m.store(array, 1, target).unwrap();
        let so_array = vm.m.special_objects();
        vm.m.store(so_array, so::EXTERNAL_OBJECTS_ARRAY as u64, array)
            .unwrap();
        let theirs = vm.signals.clone();
        let io = std::thread::spawn(move || {
            assert!(theirs.signal(2) && theirs.signal(2));
            // An index the array does not hold is dropped, not an error.
            assert!(theirs.signal(4));
        });
        assert!(vm.wait_for_signal().unwrap());
        io.join().unwrap();
        assert_eq!(vm.external_signals(), vec![target, target]);
        assert!(vm.external_signals().is_empty());
        // A signaller that signals and lets go before the wait begins is
        // not missed; one that lets go without a signal ends the wait.
        let theirs = vm.signals.clone();
        std::thread::spawn(move || assert!(theirs.signal(2)))
            .join()
            .unwrap();
        assert!(vm.wait_for_signal().unwrap());
        assert_eq!(vm.external_signals(), vec![target]);
        let theirs = vm.signals.clone();
        let quiet = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            drop(theirs);
        });
        assert!(!vm.wait_for_signal().unwrap());
        quiet.join().unwrap();
    }
}
