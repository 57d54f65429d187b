//! The snapshot primitive (97): the running image saved as an image file
//! (or a composed folder, when the image was started from one) through the
//! project's own snapshot writer, and the run goes on.
//!
//! As the VMs do, `true` is the primitive's answer in the saved image
//! (which therefore resumes in the method that called the primitive, with
//! `true` on its stack), and `false` in the session that goes on. The
//! active process's suspended context is the active context while the
//! file is written, so that the saved image resumes there. New space is
//! tenured into old space first: a snapshot holds old space only (§7).
//! The file is replaced safely (a temporary file, `fsync`, rename): when
//! the write fails, the old file is untouched and the primitive fails, so
//! the image's own error handling runs.

use std::time::Instant;

use spur_format::HeaderOverrides;
use spur_loader::snapshot::{snapshot_to_path, SnapshotOptions};

use crate::interp::{halt, Prim, Vm, PROC_CONTEXT, R};

/// Primitive error code for an operation the OS refused (`PrimErrOSError`).
const OS_ERROR: u32 = 21;

impl Vm<'_> {
    /// Primitive 97: tenure, write the image to its path, answer false.
    pub(crate) fn primitive_snapshot(&mut self, argc: u32) -> R<Prim> {
        if argc != 0 || !self.opts.allow_files {
            return Ok(Prim::Fail(1));
        }
        let t0 = Instant::now();
        let rcvr = self.pop()?;
        self.push(self.tru)?;
        self.expose();
        self.store_registers()?;
        let process = self.active_process()?;
        let suspended = self.m.fetch(process, PROC_CONTEXT)?;
        let mut roots = [
            self.ctx,
            self.method,
            self.receiver,
            process,
            suspended,
            rcvr,
            self.timer.map_or(self.nil, |t| t.semaphore),
        ];
        // Old space grows as tenuring needs; a failure (no memory left, a
        // broken object) leaves the heap half-way through: the run cannot go on.
        if let Err(e) = self.m.tenure_all(&mut roots) {
            return halt(format!("tenuring new space for a snapshot: {e}"));
        }
        let [ctx, method, receiver, process, suspended, rcvr, sem] = roots;
        (self.ctx, self.method, self.receiver) = (ctx, method, receiver);
        if let Some(t) = self.timer.as_mut() {
            t.semaphore = sem;
        }
        self.after_become()?;
        // What becomes left is garbage now: the snapshot holds none of it.
        if let Err(e) = self.m.free_forwarders() {
            return halt(format!("freeing forwarders for a snapshot: {e}"));
        }
        self.m.store(process, PROC_CONTEXT, self.ctx)?;
        let written = self.write_image();
        self.m.store(process, PROC_CONTEXT, suspended)?;
        // The session goes on with the space the tenuring gave back.
        if let Err(e) = self.m.claim_headroom() {
            return halt(format!("old space after the snapshot: {e}"));
        }
        self.stats.snapshots += 1;
        self.stats.snapshot_us += u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        match written {
            Ok(()) => {
                self.top_put(self.fls)?;
                Ok(Prim::Done)
            }
            Err(why) => {
                eprintln!(
                    "vm-loader: snapshot to {} failed, nothing was replaced: {why}",
                    self.opts.image_path.display()
                );
                self.pop()?;
                self.push(rcvr)?;
                Ok(Prim::Fail(OS_ERROR))
            }
        }
    }

    /// Writes old space to the image's path: a composed folder when the
    /// path is a folder, a single-file image otherwise.
    fn write_image(&mut self) -> Result<(), String> {
        let overrides = HeaderOverrides {
            last_hash: Some(self.m.last_hash()),
            free_old_space: Some(self.m.free_old_bytes()),
            ..HeaderOverrides::default()
        };
        let path = self.opts.image_path.clone();
        let chain =
            |e: &(dyn std::error::Error + 'static)| spur_format::error::Chain(e).to_string();
        if path.is_dir() {
            spur_loader::composed_write::write_composed(self.m.heap(), &path, &overrides)
                .map(|_| ())
                .map_err(|e| chain(&e))
        } else {
            let opts = SnapshotOptions {
                overrides,
                ..SnapshotOptions::default()
            };
            snapshot_to_path(self.m.heap(), &path, &opts, &mut |_| {})
                .map(|_| ())
                .map_err(|e| chain(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use spur_format::WordSize;

    use crate::interp::{Prim, Vm};
    use crate::Options;

    #[test]
    fn image_name_is_read_and_set_through_primitive_121() {
        let mut rt = crate::test_vm::runtime(WordSize::W64);
        let opts = Options {
            image_path: "/a/b/first.image".into(),
            ..Options::default()
        };
        let mut vm = Vm::new(&mut rt, &opts).unwrap();
        let (nil, rcvr) = (vm.nil, vm.nil);
        let name = |vm: &mut Vm<'_>| {
            vm.push(rcvr).unwrap();
            assert!(matches!(vm.primitive(121, 0, nil).unwrap(), Prim::Done));
            let s = vm.pop().unwrap();
            vm.m.string(s).unwrap()
        };
        assert_eq!(name(&mut vm), "/a/b/first.image");
        // imageName: names where the next snapshot goes, bytes as given (UTF-8).
        let path = vm.new_string("/tmp/gr\u{fc}n.image".as_bytes()).unwrap();
        vm.push(rcvr).unwrap();
        vm.push(path).unwrap();
        assert!(matches!(vm.primitive(121, 1, nil).unwrap(), Prim::Done));
        vm.pop().unwrap();
        assert_eq!(vm.opts.image_path.to_str(), Some("/tmp/gr\u{fc}n.image"));
        // Not a string, or empty: refused, the name kept.
        for bad in [vm.int(3), vm.new_string(b"").unwrap()] {
            vm.push(rcvr).unwrap();
            vm.push(bad).unwrap();
            assert!(matches!(vm.primitive(121, 1, nil).unwrap(), Prim::Fail(_)));
            vm.pop_n(2).unwrap();
        }
        assert_eq!(vm.opts.image_path.to_str(), Some("/tmp/gr\u{fc}n.image"));
    }
}
