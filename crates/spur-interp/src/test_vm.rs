//! A VM over a builder image, for the crate's unit tests.

use spur_format::WordSize;
use spur_loader::LoadOptions;
use spur_runtime::{boot, Runtime, RuntimeOptions};

use crate::interp::Vm;
use crate::Options;

/// A runtime booted from a small builder image of `word`.
pub fn runtime(word: WordSize) -> Runtime {
    let spec = spur_synth::SynthSpec::new(word, 512 << 10);
    let (bytes, _) = spur_synth::image_bytes(&spec).expect("builder image");
    boot(
        &bytes[..],
        &LoadOptions::default(),
        &RuntimeOptions::default(),
    )
    .expect("boot")
}

/// Runs `f` on a VM at the builder image's resume point.
pub fn with_vm<T>(word: WordSize, f: impl FnOnce(&mut Vm<'_>) -> T) -> T {
    let mut rt = runtime(word);
    let opts = Options::default();
    let mut vm = Vm::new(&mut rt, &opts).expect("vm");
    f(&mut vm)
}
