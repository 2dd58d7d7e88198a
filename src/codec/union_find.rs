//! The disjoint sets that the label codecs' connected-component labellers merge provisional
//! labels in (compresso's and crackle's, per voxel and per run), written here rather than
//! taken from a crate: the labellers need `u32` elements in a buffer they reuse slice after
//! slice, and a numbering of the sets by their smallest member, which is the order in which
//! a raster scan first meets each component (the order both formats number components in).
//! `petgraph`'s `UnionFind`, the well-kept general one, is sized once for a fixed number of
//! elements, keeps a rank beside each and picks representatives that are not the smallest
//! members, so it would need a renumbering pass the labellers do not.

/// Disjoint sets over the elements `0..len()`, each set's root its smallest member.
#[derive(Debug, Default, Clone)]
pub(crate) struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    /// Forgets every element, keeping the buffer for the next slice.
    pub(crate) fn clear(&mut self) {
        self.parent.clear();
    }

    /// The number of elements.
    pub(crate) fn len(&self) -> usize {
        self.parent.len()
    }

    /// Adds an element in a set of its own and returns it. Labellers add at most one
    /// element per voxel of a slice, and a slice (at most 65535² voxels) has fewer than
    /// 2^32, so the element always fits `u32`.
    #[inline]
    pub(crate) fn push(&mut self) -> u32 {
        let id = self.parent.len() as u32;
        self.parent.push(id);
        id
    }

    /// Adds `count` elements, each in a set of its own; `None` (adding nothing) when there
    /// would be more than `u32::MAX`.
    pub(crate) fn extend(&mut self, count: u32) -> Option<()> {
        let start = u32::try_from(self.parent.len()).ok()?;
        let end = start.checked_add(count)?;
        self.parent.extend(start..end);
        Some(())
    }

    /// The root (smallest member) of `i`'s set, halving the path on the way up.
    #[inline]
    pub(crate) fn find(&mut self, mut i: u32) -> u32 {
        let parent = &mut self.parent;
        while parent[i as usize] != i {
            let grand = parent[parent[i as usize] as usize];
            parent[i as usize] = grand;
            i = grand;
        }
        i
    }

    /// Merges the sets of `a` and `b`. The larger root goes under the smaller, so that a
    /// root stays its set's smallest member, which [`UnionFind::number`] relies on.
    #[inline]
    pub(crate) fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb) as usize] = ra.min(rb);
        }
    }

    /// Numbers the sets of the elements from `from` on in the order of their smallest
    /// member, counting from `first`: `numbers[i]` is the number of `i`'s set for every
    /// `i >= from` (and 0 below `from`). Returns how many sets there are. Elements below
    /// `from` must not share a set with those above (labellers keep element 0 for the
    /// background).
    pub(crate) fn number(&mut self, from: u32, first: u32, numbers: &mut Vec<u32>) -> u32 {
        let n = self.parent.len();
        numbers.clear();
        numbers.resize(n, 0);
        let mut count = 0u32;
        for i in from..n as u32 {
            let root = self.find(i);
            // The root is the set's smallest member: either `i` itself, the first member
            // met, or an element already numbered.
            numbers[i as usize] = if root == i {
                count += 1;
                first + count - 1
            } else {
                numbers[root as usize]
            };
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::UnionFind;

    /// The sets as sorted lists of members, the reference for every property below.
    fn sets(uf: &mut UnionFind) -> Vec<Vec<u32>> {
        let n = uf.len() as u32;
        let mut by_root = std::collections::BTreeMap::<u32, Vec<u32>>::new();
        for i in 0..n {
            by_root.entry(uf.find(i)).or_default().push(i);
        }
        by_root.into_values().collect()
    }

    #[test]
    fn unions_merge_and_roots_are_smallest_members() {
        let mut uf = UnionFind::default();
        for _ in 0..8 {
            uf.push();
        }
        uf.union(5, 7);
        uf.union(7, 2);
        uf.union(3, 4);
        uf.union(4, 3);
        assert_eq!(uf.find(7), 2);
        assert_eq!(
            sets(&mut uf),
            vec![vec![0], vec![1], vec![2, 5, 7], vec![3, 4], vec![6]]
        );
    }

    #[test]
    fn numbering_follows_each_sets_smallest_member() {
        let mut uf = UnionFind::default();
        uf.extend(7).unwrap();
        // Sets {1, 6}, {2, 3, 5}, {4}; element 0 is the background.
        uf.union(6, 1);
        uf.union(5, 3);
        uf.union(2, 5);
        let mut numbers = Vec::new();
        assert_eq!(uf.number(1, 1, &mut numbers), 3);
        assert_eq!(numbers, [0, 1, 2, 2, 3, 2, 1]);
        assert_eq!(uf.number(0, 0, &mut numbers), 4);
        assert_eq!(numbers, [0, 1, 2, 2, 3, 2, 1]);
    }

    #[test]
    fn random_unions_agree_with_a_naive_partition() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = |n: u32| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % u64::from(n)) as u32
        };
        let mut uf = UnionFind::default();
        for round in 0..50 {
            uf.clear();
            let n = 1 + rand(200);
            uf.extend(n).unwrap();
            // The naive partition: a set number per element, relabelled on each union.
            let mut naive: Vec<u32> = (0..n).collect();
            for _ in 0..rand(2 * n) {
                let (a, b) = (rand(n), rand(n));
                uf.union(a, b);
                let (from, to) = (naive[a as usize], naive[b as usize]);
                naive
                    .iter_mut()
                    .filter(|v| **v == from)
                    .for_each(|v| *v = to);
            }
            let mut numbers = Vec::new();
            let count = uf.number(0, 0, &mut numbers);
            let mut expected = vec![u32::MAX; n as usize];
            let mut seen = std::collections::HashMap::new();
            for i in 0..n as usize {
                let next = seen.len() as u32;
                expected[i] = *seen.entry(naive[i]).or_insert(next);
            }
            assert_eq!(numbers, expected, "round {round}");
            assert_eq!(count as usize, seen.len());
            for i in 0..n {
                assert!(uf.find(i) <= i);
            }
        }
    }

    #[test]
    fn extend_refuses_more_than_u32_elements() {
        let mut uf = UnionFind::default();
        uf.extend(3).unwrap();
        assert!(uf.extend(u32::MAX).is_none());
        assert_eq!(uf.len(), 3);
    }
}
