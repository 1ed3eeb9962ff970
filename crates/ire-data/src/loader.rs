//! Batches from a prepared split: samplers addressed by global sample index, data-parallel
//! slicing, fixed validation windows, and a background prefetch thread.
//!
//! A *sample* is a window of `seq_len + 1` consecutive tokens (inputs = first `seq_len`, targets =
//! last `seq_len`). Sample `g` depends only on `(seed, g)`:
//!
//! * [`SamplerKind::RandomWindows`]: a uniform start offset in `[0, N - seq_len - 1]` over the
//!   whole split (nanoGPT's `get_batch`), drawn from a hash of `(seed, g)`.
//! * [`SamplerKind::EpochPermutation`]: the split is cut into `W = (N - 1) / seq_len`
//!   non-overlapping windows; epoch `e = g / W` visits them in the order of a Feistel
//!   permutation keyed by `(seed, e)`, so every window is seen once per epoch.
//!
//! Data parallel: the stream of global samples is consumed in *units* of
//! `world × micro_batch` samples; in unit `k` rank `r` takes samples
//! `next_sample + k·world·micro_batch + r·micro_batch + i`. A step is `accum` units, so at
//! step `s` (global batch `G`) micro-batch `m` of rank `r` is `s·G + (m·world + r)·micro_batch + i`.
//! Ranks never overlap, 2 ranks × b/2 cover exactly the samples of 1 rank × b, and the whole
//! loader state is [`LoaderState`]`{ next_sample }`, valid at any world size.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::config::{SamplerKind, Split};
use crate::dataset::{PreparedDataset, SplitTokens};
use crate::error::{DataError, Result};
use ire_core::splitmix64;

/// A batch of windows as plain vectors, row-major `[batch, seq_len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Input ids, `batch × seq_len`.
    pub inputs: Vec<u32>,
    /// Target ids (inputs shifted by one), `batch × seq_len`.
    pub targets: Vec<u32>,
    /// Rows.
    pub batch: usize,
    /// Columns.
    pub seq_len: usize,
    /// Global sample index of row 0 (rows are consecutive samples); for validation
    /// windows, the index of the first window.
    pub first_sample: u64,
}

impl Batch {
    /// Rows `start .. start + n` as their own batch (clamped to the rows there are), e.g.
    /// to evaluate a large validation batch in micro-batches.
    pub fn rows(&self, start: usize, n: usize) -> Batch {
        let start = start.min(self.batch);
        let n = n.min(self.batch - start);
        let (a, b) = (start * self.seq_len, (start + n) * self.seq_len);
        Batch {
            inputs: self.inputs[a..b].to_vec(),
            targets: self.targets[a..b].to_vec(),
            batch: n,
            seq_len: self.seq_len,
            first_sample: self.first_sample + start as u64,
        }
    }
}

/// Where a run is in the sample stream: all a checkpoint needs to resume the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoaderState {
    /// The first global sample not yet consumed.
    pub next_sample: u64,
}

/// This process's place in data-parallel training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataParallel {
    /// This rank, `0..world`.
    pub rank: usize,
    /// Number of ranks.
    pub world: usize,
    /// Samples per micro-batch per rank.
    pub micro_batch: usize,
    /// Micro-batches per optimizer step (gradient accumulation).
    pub accum: usize,
}

impl DataParallel {
    /// One process, no accumulation.
    pub fn single(micro_batch: usize) -> Self {
        DataParallel {
            rank: 0,
            world: 1,
            micro_batch,
            accum: 1,
        }
    }

    /// Samples per unit (one micro-batch on every rank).
    pub fn unit(&self) -> u64 {
        (self.world * self.micro_batch) as u64
    }

    /// Samples per optimizer step over all ranks (`G`).
    pub fn global_batch(&self) -> u64 {
        self.unit() * self.accum as u64
    }

    /// First global sample of micro-batch `micro` of this rank in the step starting at `state`.
    pub fn sample_start(&self, state: LoaderState, micro: usize) -> u64 {
        state.next_sample + ((micro * self.world + self.rank) * self.micro_batch) as u64
    }

    fn check(&self) -> Result<()> {
        if self.world == 0 || self.rank >= self.world || self.micro_batch == 0 || self.accum == 0 {
            return Err(DataError::Loader(format!(
                "invalid data-parallel layout {self:?}: need world ≥ 1, rank < world, micro_batch ≥ 1, accum ≥ 1"
            )));
        }
        Ok(())
    }
}

/// Samples windows of one split. Cheap to clone (the mapping is shared).
#[derive(Debug, Clone)]
pub struct Loader {
    tokens: Arc<SplitTokens>,
    dir: PathBuf,
    split: Split,
    seq_len: usize,
    sampler: SamplerKind,
    seed: u64,
}

/// A keyed bijection of `[0, n)` (balanced Feistel network with cycle walking).
pub fn permute(index: u64, n: u64, key: u64) -> u64 {
    debug_assert!(index < n);
    if n <= 1 {
        return 0;
    }
    let bits = 64 - (n - 1).leading_zeros();
    let half = bits.div_ceil(2);
    let mask = (1u64 << half) - 1;
    let keys: [u64; 6] =
        std::array::from_fn(|r| splitmix64(key ^ (r as u64).wrapping_mul(0xA24B_AED4_963E_E407)));
    let mut x = index;
    loop {
        let (mut l, mut r) = (x >> half, x & mask);
        for k in keys {
            let f = splitmix64(r ^ k) & mask;
            (l, r) = (r, l ^ f);
        }
        x = (l << half) | r;
        if x < n {
            return x;
        }
    }
}

impl Loader {
    /// A loader over `split` of `dataset` with windows of `seq_len + 1` tokens.
    pub fn new(
        dataset: &PreparedDataset,
        split: Split,
        seq_len: usize,
        sampler: SamplerKind,
        seed: u64,
    ) -> Result<Self> {
        let tokens = dataset.split_tokens(split)?;
        if seq_len == 0 {
            return Err(DataError::Loader("seq_len must be at least 1".into()));
        }
        let n = tokens.len();
        if n < seq_len as u64 + 1 {
            return Err(DataError::NotEnoughTokens {
                path: dataset.dir().to_path_buf(),
                split: split.to_string(),
                tokens: n,
                needed: format!("one window of seq_len + 1 = {} tokens", seq_len + 1),
            });
        }
        Ok(Loader {
            tokens,
            dir: dataset.dir().to_path_buf(),
            split,
            seq_len,
            sampler,
            seed,
        })
    }

    /// Context length.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The split.
    pub fn split(&self) -> Split {
        self.split
    }

    /// The sampler.
    pub fn sampler(&self) -> SamplerKind {
        self.sampler
    }

    /// Tokens in the split.
    pub fn num_tokens(&self) -> u64 {
        self.tokens.len()
    }

    /// Non-overlapping windows per epoch, `(N - 1) / seq_len`.
    pub fn windows_per_epoch(&self) -> u64 {
        (self.tokens.len() - 1) / self.seq_len as u64
    }

    /// Epoch of global sample `sample` (samples / windows per epoch; for random windows
    /// this is the number of "epochs' worth" of windows drawn before it).
    pub fn epoch_of(&self, sample: u64) -> u64 {
        sample / self.windows_per_epoch()
    }

    /// Start token of global sample `sample`.
    pub fn window_start(&self, sample: u64) -> u64 {
        match self.sampler {
            SamplerKind::RandomWindows => {
                let starts = self.tokens.len() - self.seq_len as u64;
                let h = splitmix64(splitmix64(self.seed ^ 0x005E_ED0F_D47A) ^ sample);
                ((u128::from(h) * u128::from(starts)) >> 64) as u64
            }
            SamplerKind::EpochPermutation => {
                let w = self.windows_per_epoch();
                let (epoch, i) = (sample / w, sample % w);
                permute(i, w, splitmix64(self.seed).wrapping_add(splitmix64(epoch)))
                    * self.seq_len as u64
            }
        }
    }

    fn fill(&self, row: usize, start: u64, window: &mut [u32], batch: &mut Batch) {
        self.tokens.read_into(start, window);
        let c = self.seq_len;
        batch.inputs[row * c..(row + 1) * c].copy_from_slice(&window[..c]);
        batch.targets[row * c..(row + 1) * c].copy_from_slice(&window[1..]);
    }

    /// Samples `global_sample_start .. + n` as one batch. Pure: same arguments, same batch.
    /// (It cannot fail once the loader exists; the `Result` leaves room for I/O-backed splits.)
    pub fn batch(&self, global_sample_start: u64, n: usize) -> Result<Batch> {
        let mut b = Batch {
            inputs: vec![0; n * self.seq_len],
            targets: vec![0; n * self.seq_len],
            batch: n,
            seq_len: self.seq_len,
            first_sample: global_sample_start,
        };
        let mut window = vec![0u32; self.seq_len + 1];
        for row in 0..n {
            let start = self.window_start(global_sample_start + row as u64);
            self.fill(row, start, &mut window, &mut b);
        }
        Ok(b)
    }

    /// `n` non-overlapping windows spread evenly over the split (window `i` is number
    /// `⌊i·W/n⌋` of the `W` windows per epoch): a fixed evaluation set.
    pub fn val_windows(&self, n: usize) -> Result<Batch> {
        let w = self.windows_per_epoch();
        if n as u64 > w || n == 0 {
            return Err(DataError::NotEnoughTokens {
                path: self.dir.clone(),
                split: self.split.to_string(),
                tokens: self.tokens.len(),
                needed: format!(
                    "{n} non-overlapping windows of {} tokens (it holds {w})",
                    self.seq_len + 1
                ),
            });
        }
        let mut b = Batch {
            inputs: vec![0; n * self.seq_len],
            targets: vec![0; n * self.seq_len],
            batch: n,
            seq_len: self.seq_len,
            first_sample: 0,
        };
        let mut window = vec![0u32; self.seq_len + 1];
        for i in 0..n {
            let idx = (u128::from(i as u64) * u128::from(w) / n as u128) as u64;
            self.fill(i, idx * self.seq_len as u64, &mut window, &mut b);
        }
        Ok(b)
    }
}

// Here rather than in `dataset.rs`, so that the reader does not depend on the loader.
impl PreparedDataset {
    /// `n` fixed validation windows of `seq_len` (+1) tokens, spread evenly over the val split.
    pub fn val_windows(&self, n: usize, seq_len: usize) -> Result<Batch> {
        Loader::new(self, Split::Val, seq_len, SamplerKind::EpochPermutation, 0)?.val_windows(n)
    }
}

/// Builds this rank's micro-batches ahead of time on a background thread.
///
/// Batches come out in stream order: each [`Prefetcher::next_micro`] (or
/// [`Prefetcher::fresh_batch`]) consumes one unit of `world × micro_batch` global samples,
/// [`Prefetcher::next_step`] consumes `accum` units. [`Prefetcher::state`] is the position
/// after what has been handed out, which is what a checkpoint stores.
pub struct Prefetcher {
    rx: Option<Receiver<Batch>>,
    handle: Option<JoinHandle<()>>,
    dp: DataParallel,
    start: LoaderState,
    consumed_units: u64,
}

impl Prefetcher {
    /// Starts the thread at `state`, keeping up to `depth` micro-batches ready.
    pub fn new(loader: Loader, dp: DataParallel, state: LoaderState, depth: usize) -> Result<Self> {
        dp.check()?;
        let (tx, rx) = sync_channel(depth.max(1));
        let handle = std::thread::Builder::new()
            .name(format!("ire-data-prefetch-{}", dp.rank))
            .spawn(move || {
                for k in 0u64.. {
                    let first =
                        state.next_sample + k * dp.unit() + (dp.rank * dp.micro_batch) as u64;
                    let Ok(batch) = loader.batch(first, dp.micro_batch) else {
                        return;
                    };
                    if tx.send(batch).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| DataError::io("<prefetch thread>", "spawning", e))?;
        Ok(Prefetcher {
            rx: Some(rx),
            handle: Some(handle),
            dp,
            start: state,
            consumed_units: 0,
        })
    }

    /// The next micro-batch of this rank (one unit of the global stream).
    pub fn next_micro(&mut self) -> Result<Batch> {
        let batch = self
            .rx
            .as_ref()
            .and_then(|rx| rx.recv().ok())
            .ok_or_else(|| DataError::Loader("the prefetch thread stopped".into()))?;
        self.consumed_units += 1;
        Ok(batch)
    }

    /// The `accum` micro-batches of the next optimizer step.
    pub fn next_step(&mut self) -> Result<Vec<Batch>> {
        (0..self.dp.accum).map(|_| self.next_micro()).collect()
    }

    /// A fresh micro-batch drawn from the stream (advances it by one unit), e.g. for
    /// AdmIRE's mask refresh; the next step then continues after it.
    pub fn fresh_batch(&mut self) -> Result<Batch> {
        self.next_micro()
    }

    /// Position after everything handed out so far.
    pub fn state(&self) -> LoaderState {
        LoaderState {
            next_sample: self.start.next_sample + self.consumed_units * self.dp.unit(),
        }
    }

    /// The data-parallel layout.
    pub fn layout(&self) -> DataParallel {
        self.dp
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        // Dropping the receiver makes the thread's next send fail, and it returns.
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_is_a_bijection_for_awkward_sizes() {
        for n in [1u64, 2, 3, 7, 64, 65, 1000, 4097] {
            for key in [0u64, 1, 0xDEAD_BEEF] {
                let mut seen: Vec<u64> = (0..n).map(|i| permute(i, n, key)).collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n={n} key={key}");
            }
        }
        // Different keys give different orders.
        let a: Vec<u64> = (0..100).map(|i| permute(i, 100, 1)).collect();
        let b: Vec<u64> = (0..100).map(|i| permute(i, 100, 2)).collect();
        assert_ne!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn global_sample_formula_matches_the_brief() {
        let dp = DataParallel {
            rank: 1,
            world: 4,
            micro_batch: 8,
            accum: 2,
        };
        assert_eq!(dp.global_batch(), 64);
        // step 3, micro 1: 3·64 + (1·4 + 1)·8 = 232
        assert_eq!(dp.sample_start(LoaderState { next_sample: 192 }, 1), 232);
    }
}
