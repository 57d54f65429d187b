//! The runtime over an image held in a byte buffer: load it (relocated),
//! wire it, follow the scheduler to the resume point and decode the
//! bytecodes around the pc, as `vm-loader launch` does. Every step must end
//! in a value or a typed error.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spur_loader::{Backing, LoadOptions, PlacementRequest};
use spur_runtime::{launch, DryRun, Runtime};

fuzz_target!(|data: &[u8]| {
    let opts = LoadOptions {
        placement: PlacementRequest::Relocate,
        backing: Backing::Pages,
        map_files: None,
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
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
