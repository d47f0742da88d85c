//! State kept once per thread, for what every request writes: counters and caches that would otherwise be one
//! shared cache line bouncing between the cores on each request. A request touches only its worker thread's copy;
//! whoever needs the whole (a flush, a metric) visits every copy.

use std::fmt;

/// One `T` per thread that has used it, each on cache lines of its own.
pub struct PerThread<T: Send>(thread_local::ThreadLocal<Padded<T>>);

/// Two cache lines: neighbouring threads' copies must not share one, nor a line the adjacent-line prefetcher pairs.
#[repr(align(128))]
#[derive(Default)]
struct Padded<T>(T);

impl<T: Send> PerThread<T> {
    pub fn new() -> Self {
        Self(thread_local::ThreadLocal::new())
    }

    /// This thread's copy, made by `create` on the thread's first use.
    pub fn get_or(&self, create: impl FnOnce() -> T) -> &T {
        &self.0.get_or(|| Padded(create())).0
    }
}

impl<T: Send + Default> PerThread<T> {
    /// This thread's copy, `T::default()` on the thread's first use.
    pub fn get(&self) -> &T {
        &self.0.get_or_default().0
    }
}

impl<T: Send + Sync> PerThread<T> {
    /// Every thread's copy, those of threads that have ended included (what they counted is not lost).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|padded| &padded.0)
    }
}

impl<T: Send> Default for PerThread<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send> fmt::Debug for PerThread<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerThread").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn each_thread_writes_its_own_copy_and_the_sum_sees_them_all() {
        let counter: PerThread<AtomicU64> = PerThread::new();
        // All four threads are alive together (a thread that has ended may hand its copy to the next one).
        let together = std::sync::Barrier::new(4);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counter.get().fetch_add(1, Ordering::Relaxed);
                    }
                    together.wait();
                });
            }
        });
        counter.get().fetch_add(1, Ordering::Relaxed);
        let copies: Vec<u64> = counter.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        assert_eq!(copies.iter().sum::<u64>(), 4001, "counts of ended threads are kept");
        assert!(copies.len() >= 4, "the threads wrote separate copies: {copies:?}");
    }

    #[test]
    fn copies_do_not_share_a_cache_line() {
        let counter: PerThread<AtomicU64> = PerThread::new();
        let here = counter.get() as *const AtomicU64 as usize;
        let there = std::thread::scope(|scope| {
            scope.spawn(|| counter.get() as *const AtomicU64 as usize).join().expect("thread")
        });
        assert_eq!(here % 128, 0);
        assert!(here.abs_diff(there) >= 128);
    }
}
