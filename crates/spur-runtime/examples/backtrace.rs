//! An engine that, instead of interpreting, prints the stack of the process
//! the image would resume: the smallest useful [`Engine`].
//!
//! ```sh
//! cargo run --release -p spur-runtime --example backtrace [IMAGE]
//! ```
//!
//! With no IMAGE it boots a small image the builder makes in memory.

use std::convert::Infallible;

use spur_format::WordSize;
use spur_loader::LoadOptions;
use spur_runtime::method::{home_method, CompiledCode};
use spur_runtime::resume::context;
use spur_runtime::{boot, launch, Engine, Runtime, RuntimeOptions};

/// Walks the sender chain from the resume point.
struct Backtrace {
    max_frames: usize,
}

impl Engine for Backtrace {
    type Output = Vec<String>;
    type Error = Infallible;

    fn name(&self) -> &str {
        "backtrace"
    }

    fn run(&mut self, rt: &mut Runtime) -> Result<Vec<String>, Infallible> {
        let v = rt.view();
        let classes = rt.class_table();
        let mem = rt.memory();
        let nil = mem.nil();
        let mut lines = vec![format!(
            "new space {} bytes at {}, {} stack pages of {} bytes, {} semaphore slots",
            rt.new_space().layout().total_bytes,
            rt.new_space().start(),
            rt.stack_zone().layout().count,
            rt.stack_zone().layout().page_bytes,
            rt.semaphores().size()
        )];
        let mut ctx = rt.resume_point().context;
        while ctx != nil && lines.len() <= self.max_frames {
            let slot = |i| v.slot(ctx, i).unwrap_or(nil);
            let name = match CompiledCode::read(&v, slot(context::METHOD)) {
                Ok(code) => {
                    let block = code.is_block(&v) || slot(context::CLOSURE_OR_NIL) != nil;
                    let home = home_method(&v, code, 64).ok();
                    let class = home
                        .as_ref()
                        .and_then(|h| h.method_class(&v, classes))
                        .and_then(|c| classes.class_name(&v, c));
                    let selector = home
                        .as_ref()
                        .and_then(|h| h.selector(&v))
                        .and_then(|s| v.string(s));
                    format!(
                        "{}{}>>{}",
                        if block { "[] in " } else { "" },
                        class.as_deref().unwrap_or("?"),
                        selector.as_deref().unwrap_or("?")
                    )
                }
                Err(why) => format!("(no method: {why})"),
            };
            let pc = mem
                .small_int(slot(context::PC))
                .map_or("dead".to_string(), |pc| pc.to_string());
            let receiver = rt
                .class_name_of(slot(context::RECEIVER))
                .unwrap_or_else(|| "?".into());
            lines.push(format!("{ctx:#x}  {name}  pc {pc}  receiver: {receiver}"));
            ctx = slot(context::SENDER);
        }
        Ok(lines)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let load = LoadOptions::default();
    let opts = RuntimeOptions::default();
    let mut rt = match std::env::args_os().nth(1) {
        Some(path) => {
            let src = spur_loader::FileSource::open(path.as_ref())?;
            boot(&src, &load, &opts)?
        }
        None => {
            let spec = spur_synth::SynthSpec::new(WordSize::W64, 1 << 20);
            let (bytes, _) = spur_synth::image_bytes(&spec)?;
            boot(bytes.as_slice(), &load, &opts)?
        }
    };
    let Ok(lines) = launch(&mut rt, &mut Backtrace { max_frames: 32 });
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
