//! Free chunks and the free lists (§3.5.1).
//!
//! Small chunks (below `numFreeLists * 8` bytes) are pushed on their exact-size list as they are
//! written: each new chunk's `next` is the previous head, so nothing needs
//! patching but the heads. Large chunks are remembered and, at the end,
//! arranged into a balanced binary search tree by size (equal sizes chained
//! through `next` off the tree node), whose links are written by seeking
//! back.

use spur_format::layout::to_usize;
use std::collections::BTreeMap;

use spur_format::WordSize;

/// A large chunk waiting for its tree links.
#[derive(Debug, Clone, Copy)]
struct Large {
    addr: u64,
    bytes: u64,
    slot0: u64,
}

/// The free lists being built.
#[derive(Debug)]
pub(crate) struct FreeSpace {
    word: WordSize,
    heads: Vec<u64>,
    large: Vec<Large>,
    /// Chunks written.
    pub(crate) count: u64,
    /// Their total bytes.
    pub(crate) bytes: u64,
}

/// The links of one large chunk: slots 0..4 (next, prev, parent, smaller, larger).
pub(crate) type Links = [u64; 5];

impl FreeSpace {
    pub(crate) fn new(word: WordSize) -> Self {
        FreeSpace {
            word,
            heads: vec![0; to_usize(word.num_free_lists())],
            large: Vec::new(),
            count: 0,
            bytes: 0,
        }
    }

    /// Smallest chunk that goes into the tree rather than a list.
    pub(crate) fn tree_min(&self) -> u64 {
        self.word.num_free_lists() * 8
    }

    /// The `next` value to write into a new chunk of `bytes` bytes.
    pub(crate) fn next_for(&self, bytes: u64) -> u64 {
        if bytes < self.tree_min() {
            self.heads[(bytes / 8) as usize]
        } else {
            0
        }
    }

    /// Records a chunk just written at `addr` (slot 0 at file offset `slot0`).
    pub(crate) fn add(&mut self, addr: u64, bytes: u64, slot0: u64) {
        self.count += 1;
        self.bytes += bytes;
        if bytes < self.tree_min() {
            self.heads[(bytes / 8) as usize] = addr;
        } else {
            self.large.push(Large { addr, bytes, slot0 });
        }
    }

    /// Number of large chunks (tree nodes and their chains).
    #[cfg(test)]
    pub(crate) fn large_count(&self) -> usize {
        self.large.len()
    }

    /// Finishes the tree: the list heads (head 0 = tree root) and, for each
    /// large chunk, the file offset of its slot 0 and its five link slots.
    pub(crate) fn finish(&self) -> (Vec<u64>, Vec<(u64, Links)>) {
        let mut by_size: BTreeMap<u64, Vec<Large>> = BTreeMap::new();
        for l in &self.large {
            by_size.entry(l.bytes).or_default().push(*l);
        }
        let groups: Vec<Vec<Large>> = by_size.into_values().collect();
        let mut links: Vec<Links> = vec![[0; 5]; groups.len()];
        let root = build(&groups, &mut links, 0, groups.len(), 0);
        let mut heads = self.heads.clone();
        heads[0] = root;
        let mut out = Vec::with_capacity(self.large.len());
        for (g, node_links) in groups.iter().zip(&links) {
            for (i, chunk) in g.iter().enumerate() {
                let next = g.get(i + 1).map_or(0, |c| c.addr);
                let prev = if i == 0 { 0 } else { g[i - 1].addr };
                let l = if i == 0 {
                    [next, 0, node_links[2], node_links[3], node_links[4]]
                } else {
                    [next, prev, 0, 0, 0]
                };
                out.push((chunk.slot0, l));
            }
        }
        (heads, out)
    }
}

/// Builds the balanced tree over `groups[lo..hi]` (sorted by size) under
/// `parent`; returns the subtree's root address (0 when empty).
fn build(groups: &[Vec<Large>], links: &mut [Links], lo: usize, hi: usize, parent: u64) -> u64 {
    if lo >= hi {
        return 0;
    }
    let mid = lo + (hi - lo) / 2;
    let me = groups[mid][0].addr;
    let smaller = build(groups, links, lo, mid, me);
    let larger = build(groups, links, mid + 1, hi, me);
    links[mid][2] = parent;
    links[mid][3] = smaller;
    links[mid][4] = larger;
    me
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_chain_backwards_and_the_tree_is_ordered() {
        let mut f = FreeSpace::new(WordSize::W64);
        assert_eq!(f.next_for(32), 0);
        f.add(0x1000, 32, 8);
        assert_eq!(f.next_for(32), 0x1000);
        f.add(0x2000, 32, 16);
        for (i, (addr, bytes)) in [
            (0x3000, 4096),
            (0x4000, 512),
            (0x5000, 4096),
            (0x6000, 1024),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(f.next_for(bytes), 0);
            f.add(addr, bytes, 100 + i as u64);
        }
        assert_eq!(f.large_count(), 4);
        let (heads, links) = f.finish();
        assert_eq!(heads[4], 0x2000);
        // Sizes 512, 1024, 4096: the median, 1024, is the root.
        assert_eq!(heads[0], 0x6000);
        let by_off: BTreeMap<u64, Links> = links.into_iter().collect();
        assert_eq!(by_off[&103], [0, 0, 0, 0x4000, 0x3000]);
        assert_eq!(by_off[&101], [0, 0, 0x6000, 0, 0]);
        assert_eq!(by_off[&100], [0x5000, 0, 0x6000, 0, 0]);
        assert_eq!(by_off[&102], [0, 0x3000, 0, 0, 0]);
        assert_eq!((f.count, f.bytes), (6, 64 + 4096 * 2 + 512 + 1024));
    }
}
