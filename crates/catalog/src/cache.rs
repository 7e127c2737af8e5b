//! A small bounded cache for immutable, content-addressed values (tree nodes, commits).
//!
//! Two generations: new and recently used entries live in `young`; when `young` outgrows half the
//! budget it becomes `old` and the previous `old` is dropped. A hit in `old` moves the entry back to
//! `young`. This approximates LRU with O(1) work per operation and never holds more than about
//! `budget` units (plus one entry).

use std::collections::HashMap;
use std::hash::Hash;

pub(crate) struct Cache<K, V> {
    young: HashMap<K, (V, usize)>,
    old: HashMap<K, (V, usize)>,
    young_weight: usize,
    budget: usize,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    /// A cache holding about `budget` units of weight (bytes, or entries with weight 1).
    pub(crate) fn new(budget: usize) -> Self {
        Cache {
            young: HashMap::new(),
            old: HashMap::new(),
            young_weight: 0,
            budget: budget.max(2),
        }
    }

    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        if let Some((v, _)) = self.young.get(key) {
            return Some(v.clone());
        }
        let (k, (v, w)) = self.old.remove_entry(key)?;
        let out = v.clone();
        self.put(k, v, w);
        Some(out)
    }

    pub(crate) fn put(&mut self, key: K, value: V, weight: usize) {
        if weight > self.budget / 2 {
            return; // too big to be worth caching
        }
        if let Some((_, old_w)) = self.young.insert(key, (value, weight)) {
            self.young_weight -= old_w;
        }
        self.young_weight += weight;
        if self.young_weight > self.budget / 2 {
            self.old = std::mem::take(&mut self.young);
            self.young_weight = 0;
        }
    }

    #[cfg(test)]
    pub(crate) fn weight(&self) -> usize {
        self.young_weight + self.old.values().map(|(_, w)| w).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_keeps_recent() {
        let mut c = Cache::new(100);
        for i in 0..1000 {
            c.put(i, i * 2, 10);
            assert!(c.weight() <= 100, "weight {} after {i}", c.weight());
            // The entry just inserted is always there.
            assert_eq!(c.get(&i), Some(i * 2));
        }
        assert_eq!(c.get(&0), None, "old entries are evicted");
        // A hot entry survives generations because hits promote it.
        c.put(5000, 1, 10);
        for i in 0..100 {
            c.put(10_000 + i, 0, 10);
            assert_eq!(c.get(&5000), Some(1));
        }
        c.put(7, 7, 1000);
        assert_eq!(c.get(&7), None, "oversized values are not cached");
    }
}
