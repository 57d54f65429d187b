//! The runtime over an image held in a byte buffer: load it (relocated),
//! wire it, follow the scheduler to the resume point and decode the
//! bytecodes around the pc, as `vm-loader launch --dry-run` does, then run
//! the interpreter for at most 20 000 bytecodes (no real files). Every step
//! must end in a value or a typed error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spur_loader::{Backing, LoadOptions, PlacementRequest};
use spur_runtime::{launch, DryRun, Runtime};

fuzz_target!(|data: &[u8]| {
    let opts = LoadOptions {
        placement: PlacementRequest::Relocate,
        backing: Backing::Pages,
        map_files: None,
        // The default: relocation reads and swizzles on two threads.
        threads: spur_loader::Threads::default(),
    };
    let Ok(heap) = spur_loader::load(data, &opts) else {
        return;
    };
    match Runtime::wire(heap, &Default::default()) {
        Ok(mut rt) => {
            let r = rt.resume_point();
            let _ = (r.pc, r.window.len(), r.selector_name.len());
            if let Err(e) = launch(&mut rt, &mut DryRun) {
                let _ = e.to_string();
            }
            let mut engine = spur_interp::Interpreter::new(spur_interp::Options {
                max_bytecodes: Some(20_000),
                timeout: Some(std::time::Duration::from_secs(2)),
                allow_files: false,
                real_time_waits: false,
                // A damaged image may ask for anything: a little growth is enough.
                growth_limit: Some(64 << 20),
                ..Default::default()
            });
            match launch(&mut rt, &mut engine) {
                Ok(r) => {
                    let _ = r.outcome.line();
                }
                Err(e) => {
                    let _ = e.to_string();
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
