//! Walking the instances of a class: primitives 77 (`someInstance`), 78
//! (`nextInstance`) and 177 (`allInstances`), over old space, perm space
//! and new space in the memory's walk order (old space first, address
//! order within each space).

use spur_format::raw::FMT_INDEXABLE;

use crate::interp::{Prim, Vm, R};
use crate::mem::{MemoryError, Oop};

impl Vm<'_> {
    /// Primitive 77: the first instance of the receiver (a class); fails
    /// when there is none or the receiver is not a class of the table.
    pub(crate) fn primitive_some_instance(&mut self) -> R<Prim> {
        let class = self.stack_value(0)?;
        let Some(ci) = self.m.class_index_of_class(class) else {
            return Ok(Prim::Fail(1));
        };
        let first = self.m.instances_of(ci).next();
        match first {
            Some(o) => {
                self.pop_n_push(1, o)?;
                Ok(Prim::Done)
            }
            None => Ok(Prim::Fail(1)),
        }
    }

    /// Primitive 78: the instance of the receiver's class after the
    /// receiver in the walk; fails after the last one.
    pub(crate) fn primitive_next_instance(&mut self) -> R<Prim> {
        let obj = self.stack_value(0)?;
        if obj.is_immediate(self.word) {
            return Ok(Prim::Fail(1));
        }
        let ci = self.m.class_index_of(obj)?;
        let next = self.m.instances_of(ci).skip_while(|&o| o != obj).nth(1);
        match next {
            Some(o) => {
                self.pop_n_push(1, o)?;
                Ok(Prim::Done)
            }
            None => Ok(Prim::Fail(1)),
        }
    }

    /// Primitive 177: an Array of every instance of the receiver (a
    /// class), made after they were counted (so an Array's own answer is
    /// not in it). An Array eden cannot hold is allocated in old space; the
    /// primitive fails only when old space cannot grow by it, and the
    /// image's fallback then walks with 77 and 78.
    pub(crate) fn primitive_all_instances(&mut self) -> R<Prim> {
        let class = self.stack_value(0)?;
        let Some(ci) = self.m.class_index_of_class(class) else {
            return Ok(Prim::Fail(1));
        };
        let all: Vec<Oop> = self.m.instances_of(ci).collect();
        let array = match self
            .m
            .allocate_slots(self.ci_array, FMT_INDEXABLE, all.len() as u64)
        {
            Ok(a) => a,
            Err(
                MemoryError::EdenFull { .. }
                | MemoryError::OldSpaceFull { .. }
                | MemoryError::GrowthLimit { .. },
            ) => return Ok(Prim::Fail(1)),
            Err(e) => return Err(e.into()),
        };
        for (i, o) in all.into_iter().enumerate() {
            self.m.store(array, i as u64, o)?;
        }
        self.pop_n_push(1, array)?;
        Ok(Prim::Done)
    }
}

#[cfg(test)]
mod tests {
    use spur_format::WordSize;
    use spur_loader::LoadOptions;
    use spur_runtime::{boot, RuntimeOptions};
    use spur_synth::SynthSpec;

    use crate::interp::{Prim, Vm};
    use crate::Options;

    #[test]
    fn all_instances_and_the_some_next_walk_find_the_same_objects() {
        for word in [WordSize::W32, WordSize::W64] {
            let (bytes, _) = spur_synth::image_bytes(&SynthSpec::new(word, 256 << 10)).unwrap();
            let mut rt = boot(
                bytes.as_slice(),
                &LoadOptions::default(),
                &RuntimeOptions::default(),
            )
            .unwrap();
            let mut vm = Vm::new(&mut rt, &Options::default()).unwrap();
            let ci = vm.ci_array;
            let class = vm.m.class_at(ci).unwrap();
            let nil = vm.nil;
            // One more Array in eden, after the old ones.
            let young = vm.new_array(2).unwrap();
            let expected: Vec<_> = vm.m.instances_of(ci).collect();
            assert!(expected.len() > 1 && expected.contains(&young));

            vm.push(class).unwrap();
            assert!(matches!(vm.primitive(177, 0, nil).unwrap(), Prim::Done));
            let all = vm.pop().unwrap();
            let n = vm.m.num_slots(all).unwrap();
            let listed: Vec<_> = (0..n).map(|i| vm.m.fetch(all, i).unwrap()).collect();
            assert_eq!(listed, expected, "{word:?}");
            // The answer is an Array too, the newest: the walk finds it last.
            let mut expected = expected;
            expected.push(all);

            vm.push(class).unwrap();
            assert!(matches!(vm.primitive(77, 0, nil).unwrap(), Prim::Done));
            let mut walked = vec![vm.stack_value(0).unwrap()];
            while let Prim::Done = vm.primitive(78, 0, nil).unwrap() {
                walked.push(vm.stack_value(0).unwrap());
            }
            assert_eq!(walked, expected, "{word:?}");
            vm.pop().unwrap();

            // Not a class: both fail.
            let three = vm.int(3);
            for p in [77, 177] {
                vm.push(three).unwrap();
                assert!(matches!(vm.primitive(p, 0, nil).unwrap(), Prim::Fail(_)));
                vm.pop().unwrap();
            }
        }
    }
}
