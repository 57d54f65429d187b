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

use spur_format::read::walk::{plausible_run, step};
use spur_format::{Layout, Obj};

pub use spur_format::read::walk::GUESS_STEPS;

/// How far a guessed walk records its object starts, for the walk of the
/// part before to land on.
pub const PREFIX_BYTES: usize = 64 << 10;

/// How far past a part's boundary a start is looked for.
const GUESS_SPAN: usize = 1 << 20;

/// A guessed object start of a stretch of a segment and what the walk from
/// it met first.
///
/// A heap walk split at guesses ([`walk_in_parts`]) is the walk from the
/// segment's start whatever was guessed: the walk of the part before checks
/// the guess, and one it does not land on is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess {
    /// The guessed object start.
    pub at: usize,
    /// The object starts the walk from `at` met below `at + PREFIX_BYTES`.
    pub prefix: Vec<usize>,
    /// Where the guessed part's own walk begins: the first start past the
    /// prefix (or the limit).
    pub count_from: usize,
}

impl Guess {
    /// The guess of a start at `at` in `bytes[..limit]`, with its prefix;
    /// `None` when the walk from `at` fails within the prefix.
    pub fn walked_from<L: Layout>(bytes: &[u8], at: usize, limit: usize) -> Option<Guess> {
        let mut prefix = Vec::new();
        let mut pos = at;
        while pos < limit && pos < at + PREFIX_BYTES {
            prefix.push(pos);
            pos = step::<L>(bytes, pos, limit).ok()?.1;
        }
        Some(Guess {
            at,
            prefix,
            count_from: pos,
        })
    }
}

/// The guessed start of the part beginning near `from`: the first 8-byte
/// offset past it where [`GUESS_STEPS`] headers in a row look like objects
/// of a heap with `slots` class-table entries, looked for over 1 MiB.
pub fn guess<L: Layout>(bytes: &[u8], from: usize, limit: usize, slots: usize) -> Option<Guess> {
    let end = from.saturating_add(GUESS_SPAN).min(limit);
    let at = (from.next_multiple_of(8)..end)
        .step_by(8)
        .find(|&p| plausible_run::<L>(bytes, p, limit, slots).is_some())?;
    Guess::walked_from::<L>(bytes, at, limit)
}

/// The guesses for `parts` parts of equal size of `bytes[..limit]`: one for
/// each part but the first.
pub fn guesses<L: Layout>(
    bytes: &[u8],
    limit: usize,
    parts: usize,
    slots: usize,
) -> Vec<Option<Guess>> {
    (1..parts)
        .map(|k| guess::<L>(bytes, limit / parts * k, limit, slots))
        .collect()
}

/// Where a part's walk ended.
#[derive(Debug)]
enum End {
    /// At the limit.
    Limit,
    /// Where part `j` began its own walk.
    Part(usize),
    /// At a step that failed: the offset and what is wrong.
    Failed(usize, String),
}

/// A walk of `bytes[..limit]` split at guesses, joined: what each part's
/// visitor saw, in walk order, and how the walk from the start ended.
#[derive(Debug)]
pub struct Parts<V> {
    /// The visitors of the parts the walk went through, in order: together
    /// they saw every object of the walk from the start, once, in order.
    pub parts: Vec<V>,
    /// The offset and reason of the step that failed, if one did.
    pub failed: Option<(usize, String)>,
    /// Some part with a guess ran, but the walk from the start does not go
    /// through it: its visitor saw objects of no walk and is dropped.
    pub discarded: bool,
}

/// Walks the objects of `bytes[..limit]` in parts, one thread each: part 0
/// from offset 0, part `k` from `guesses[k - 1]` when there is one. Each
/// part's visitor (made by `make`) is shown the objects of its part in
/// order. The walk of a part goes on until it lands on the next guessed
/// walk (one of the starts of its prefix), then stops where that part began
/// its own walk; a guess it passes without landing on it is ignored and the
/// walk goes on through that part itself. So the parts joined see the
/// objects of the walk from the start, once each and in order, and the
/// step that ends it is that walk's.
pub fn walk_in_parts<L: Layout, V: Send>(
    bytes: &[u8],
    limit: usize,
    guesses: &[Option<Guess>],
    make: impl Fn() -> V + Sync,
    visit: impl Fn(&mut V, &Obj) + Sync,
) -> Parts<V> {
    // Part j's guess, for j >= 1.
    let g = |j: usize| guesses.get(j - 1).and_then(Option::as_ref);
    let run = |part: usize, from: usize| -> (V, End) {
        let mut v = make();
        let mut pos = from;
        // The next part whose guess this walk has yet to check.
        let mut j = part + 1;
        let mut synced = false;
        // Where the walk looks at the guesses again.
        let mut watch = 0;
        while pos < limit {
            if pos >= watch {
                while !synced && j <= guesses.len() {
                    match g(j) {
                        // A start of part j's walk, where that part began its own.
                        Some(gj) if pos == gj.count_from => {
                            synced = true;
                            break;
                        }
                        // Past part j's prefix without meeting it: part j is ignored.
                        Some(gj) if pos > gj.count_from => j += 1,
                        // On part j's walk: from here on both walks are one.
                        Some(gj) if pos >= gj.at => {
                            synced = gj.prefix.binary_search(&pos).is_ok();
                            break;
                        }
                        Some(_) => break,
                        None => j += 1,
                    }
                }
                if synced && g(j).is_some_and(|gj| pos == gj.count_from) {
                    return (v, End::Part(j));
                }
                // Nothing above changes before the walk reaches part j's
                // prefix or, once on it, where that part began.
                watch = match g(j) {
                    Some(gj) if synced => gj.count_from,
                    Some(gj) => gj.at,
                    None => usize::MAX,
                };
            }
            match step::<L>(bytes, pos, limit) {
                Ok((obj, next)) => {
                    visit(&mut v, &obj);
                    pos = next;
                }
                Err((at, what)) => return (v, End::Failed(at, what)),
            }
        }
        if synced && g(j).is_some_and(|gj| pos == gj.count_from) {
            return (v, End::Part(j));
        }
        (v, End::Limit)
    };
    let mut results: Vec<Option<(V, End)>> = std::thread::scope(|sc| {
        let workers: Vec<_> = (1..=guesses.len())
            .map(|k| g(k).map(|gk| sc.spawn(move || run(k, gk.count_from))))
            .collect();
        let first = run(0, 0);
        std::iter::once(Some(first))
            .chain(
                workers
                    .into_iter()
                    .map(|w| w.map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))),
            )
            .collect()
    });
    let mut parts = Vec::new();
    let mut part = 0;
    let failed = loop {
        // Only a part whose guess a walk landed on is handed on to, and
        // every such part ran.
        let Some((v, end)) = results.get_mut(part).and_then(Option::take) else {
            break Some((0, "the parallel walk lost a part".into()));
        };
        parts.push(v);
        match end {
            End::Limit => break None,
            End::Failed(at, what) => break Some((at, what)),
            End::Part(j) => part = j,
        }
    };
    let discarded = results.iter().any(Option::is_some);
    tracing::debug!(
        parts = guesses.len() + 1,
        used = parts.len(),
        discarded,
        "walk of a segment in parts"
    );
    Parts {
        parts,
        failed,
        discarded,
    }
}
