//! How many threads the loader's passes may use.
//!
//! Relocation overlaps reading with swizzling (the file is read on the
//! calling thread while a second one rewrites the objects already read);
//! [`verify`](crate::verify) splits its object walk at boundaries found in
//! one cheap pass. Every threaded pass gives exactly the result of its
//! single-threaded form, which [`Threads::One`] selects.

/// How many threads a load or a heap walk may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// Everything on the calling thread.
    One,
    /// As many as the system says are available (at least one).
    #[default]
    Available,
    /// At most this many (0 is taken as 1).
    AtMost(usize),
}

impl Threads {
    /// The number of threads this allows on this machine.
    pub fn count(self) -> usize {
        match self {
            Threads::One => 1,
            Threads::Available => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Threads::AtMost(n) => n.max(1),
        }
    }
}
