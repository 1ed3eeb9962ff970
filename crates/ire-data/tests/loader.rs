//! Samplers, data-parallel slicing, prefetching and validation windows on a synthetic
//! prepared folder whose token at stream position p is p (so a window shows its start).

mod common;

use std::collections::BTreeSet;

use ire_data::{DataError, DataParallel, Loader, LoaderState, Prefetcher, SamplerKind, Split};

const CTX: usize = 16;

fn dataset(dir: &std::path::Path) -> ire_data::PreparedDataset {
    // 3 train shards (1000 + 37 + 2000 = 3037 tokens) so windows cross shard ends.
    common::synthetic_dataset(
        dir,
        &[
            (Split::Train, vec![1000, 37, 2000]),
            (Split::Val, vec![500]),
        ],
    )
}

fn starts(b: &ire_data::Batch) -> Vec<u64> {
    (0..b.batch)
        .map(|r| u64::from(b.inputs[r * b.seq_len]))
        .collect()
}

#[test]
fn random_windows_are_contiguous_in_range_and_a_function_of_seed_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    assert_eq!(ds.num_tokens(Split::Train), 3037);
    let l = Loader::new(&ds, Split::Train, CTX, SamplerKind::RandomWindows, 7).unwrap();
    let b = l.batch(0, 4000).unwrap();
    assert_eq!(
        (b.batch, b.seq_len, b.inputs.len(), b.targets.len()),
        (4000, CTX, 4000 * CTX, 4000 * CTX)
    );
    for r in 0..b.batch {
        let s = b.inputs[r * CTX];
        assert!(u64::from(s) < 3037 - CTX as u64, "start {s}");
        for j in 0..CTX {
            assert_eq!(b.inputs[r * CTX + j], s + j as u32);
            assert_eq!(b.targets[r * CTX + j], s + j as u32 + 1);
        }
    }
    // Uniform over 3021 starts: 4000 draws reach both ends and cross the 1000|1037 shard ends.
    let st = starts(&b);
    assert!(st.iter().any(|&s| s < 30) && st.iter().any(|&s| s > 2990));
    assert!(st.iter().any(|&s| (985..1000).contains(&s)));
    // Pure: any sub-range gives the same rows; another seed gives other rows.
    let again = l.batch(1000, 8).unwrap();
    assert_eq!(starts(&again), st[1000..1008].to_vec());
    let other = Loader::new(&ds, Split::Train, CTX, SamplerKind::RandomWindows, 8).unwrap();
    assert_ne!(starts(&other.batch(0, 8).unwrap()), st[..8].to_vec());
}

#[test]
fn epoch_permutation_visits_every_window_once_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let l = Loader::new(&ds, Split::Train, CTX, SamplerKind::EpochPermutation, 3).unwrap();
    let w = l.windows_per_epoch();
    assert_eq!(w, (3037 - 1) / 16); // 189
    let e0 = starts(&l.batch(0, w as usize).unwrap());
    let e1 = starts(&l.batch(w, w as usize).unwrap());
    let all: Vec<u64> = (0..w).map(|i| i * CTX as u64).collect();
    let mut s0 = e0.clone();
    s0.sort_unstable();
    let mut s1 = e1.clone();
    s1.sort_unstable();
    assert_eq!(s0, all);
    assert_eq!(s1, all);
    assert_ne!(e0, e1, "each epoch has its own order");
    assert_ne!(e0, all, "the order is shuffled");
    assert_eq!(l.epoch_of(w), 1);
}

#[test]
fn ranks_take_disjoint_samples_and_two_half_ranks_equal_one_full_rank() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let l = Loader::new(&ds, Split::Train, CTX, SamplerKind::RandomWindows, 11).unwrap();
    let steps = 3;
    // 1 rank × micro 8 × accum 2  vs  2 ranks × micro 4 × accum 2: G = 16 both.
    let mut one = Prefetcher::new(
        l.clone(),
        DataParallel {
            rank: 0,
            world: 1,
            micro_batch: 8,
            accum: 2,
        },
        LoaderState::default(),
        2,
    )
    .unwrap();
    let mut r0 = Prefetcher::new(
        l.clone(),
        DataParallel {
            rank: 0,
            world: 2,
            micro_batch: 4,
            accum: 2,
        },
        LoaderState::default(),
        2,
    )
    .unwrap();
    let mut r1 = Prefetcher::new(
        l.clone(),
        DataParallel {
            rank: 1,
            world: 2,
            micro_batch: 4,
            accum: 2,
        },
        LoaderState::default(),
        2,
    )
    .unwrap();
    for s in 0..steps {
        let a: Vec<_> = one.next_step().unwrap();
        let b0 = r0.next_step().unwrap();
        let b1 = r1.next_step().unwrap();
        // Exact global indices: s·G + (m·W + r)·b.
        assert_eq!(
            a.iter().map(|b| b.first_sample).collect::<Vec<_>>(),
            vec![16 * s, 16 * s + 8]
        );
        assert_eq!(
            b0.iter().map(|b| b.first_sample).collect::<Vec<_>>(),
            vec![16 * s, 16 * s + 8]
        );
        assert_eq!(
            b1.iter().map(|b| b.first_sample).collect::<Vec<_>>(),
            vec![16 * s + 4, 16 * s + 12]
        );
        let rows = |bs: &[ire_data::Batch]| -> BTreeSet<(u64, Vec<u32>)> {
            bs.iter()
                .flat_map(|b| {
                    (0..b.batch).map(move |r| {
                        (
                            b.first_sample + r as u64,
                            b.inputs[r * CTX..(r + 1) * CTX].to_vec(),
                        )
                    })
                })
                .collect()
        };
        let full = rows(&a);
        let mut halves = rows(&b0);
        let h1 = rows(&b1);
        assert!(halves.is_disjoint(&h1));
        halves.extend(h1);
        assert_eq!(full, halves, "step {s}");
        assert_eq!(full.len(), 16);
    }
    assert_eq!(one.state(), LoaderState { next_sample: 48 });
    assert_eq!(r1.state(), LoaderState { next_sample: 48 });
}

#[test]
fn a_fresh_batch_advances_the_stream_and_state_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let l = Loader::new(&ds, Split::Train, CTX, SamplerKind::EpochPermutation, 5).unwrap();
    let dp = DataParallel {
        rank: 1,
        world: 2,
        micro_batch: 3,
        accum: 2,
    };
    let mut p = Prefetcher::new(l.clone(), dp, LoaderState::default(), 4).unwrap();
    p.next_step().unwrap();
    let fresh = p.fresh_batch().unwrap();
    assert_eq!(fresh.first_sample, 12 + 3); // after one step (G = 12), rank 1 of the unit
    assert_eq!(p.state(), LoaderState { next_sample: 18 });
    let saved = p.state();
    let cont = p.next_step().unwrap();
    drop(p);
    // Resume from the saved state at another world size: rank 0 of 1 with micro 6 sees the
    // union of both ranks' rows.
    let mut resumed = Prefetcher::new(l.clone(), dp, saved, 1).unwrap();
    assert_eq!(resumed.next_step().unwrap(), cont);
    let mut solo = Prefetcher::new(
        l.clone(),
        DataParallel {
            rank: 0,
            world: 1,
            micro_batch: 6,
            accum: 2,
        },
        saved,
        1,
    )
    .unwrap();
    let s = solo.next_step().unwrap();
    assert_eq!(s[0].first_sample, 18);
    assert_eq!(&s[0].inputs[3 * CTX..], &cont[0].inputs[..]);
    // And batches equal the pure function.
    assert_eq!(cont[1], l.batch(18 + 6 + 3, 3).unwrap());
}

#[test]
fn val_windows_are_fixed_spread_and_non_overlapping() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let v = ds.val_windows(4, CTX).unwrap();
    // 500 tokens → W = 31 windows; picks ⌊i·31/4⌋ = 0, 7, 15, 23 → starts ×16.
    assert_eq!(starts(&v), vec![0, 112, 240, 368]);
    assert_eq!(v.targets[0], 1);
    assert_eq!(ds.val_windows(4, CTX).unwrap(), v);
    let lv = Loader::new(&ds, Split::Val, CTX, SamplerKind::RandomWindows, 99).unwrap();
    assert_eq!(
        lv.val_windows(4).unwrap(),
        v,
        "independent of sampler and seed"
    );
    let mid = v.rows(1, 2);
    assert_eq!((mid.batch, mid.first_sample), (2, 1));
    assert_eq!(mid.inputs, v.inputs[CTX..3 * CTX].to_vec());
    assert_eq!(mid.targets, v.targets[CTX..3 * CTX].to_vec());
    assert_eq!(v.rows(3, 5).batch, 1);
    let e = ds.val_windows(32, CTX).unwrap_err();
    assert!(matches!(e, DataError::NotEnoughTokens { .. }), "{e}");
    assert!(
        e.to_string().contains("val") && e.to_string().contains("32 non-overlapping windows"),
        "{e}"
    );
}

#[test]
fn a_window_longer_than_the_split_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let e = Loader::new(&ds, Split::Val, 500, SamplerKind::RandomWindows, 0).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DataError::NotEnoughTokens { tokens: 500, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("501 tokens") && msg.contains(&dir.path().display().to_string()),
        "{msg}"
    );
    // ctx 499 fits exactly: one window.
    let l = Loader::new(&ds, Split::Val, 499, SamplerKind::EpochPermutation, 0).unwrap();
    assert_eq!(l.windows_per_epoch(), 1);
    assert_eq!(starts(&l.batch(5, 2).unwrap()), vec![0, 0]);
    let e = Loader::new(&ds, Split::Test, 8, SamplerKind::RandomWindows, 0).unwrap_err();
    assert!(matches!(e, DataError::NoSuchSplit { .. }), "{e}");
}

#[test]
fn bad_layouts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ds = dataset(dir.path());
    let l = Loader::new(&ds, Split::Train, CTX, SamplerKind::RandomWindows, 0).unwrap();
    for dp in [
        DataParallel {
            rank: 2,
            world: 2,
            micro_batch: 1,
            accum: 1,
        },
        DataParallel {
            rank: 0,
            world: 1,
            micro_batch: 0,
            accum: 1,
        },
        DataParallel {
            rank: 0,
            world: 1,
            micro_batch: 1,
            accum: 0,
        },
    ] {
        assert!(matches!(
            Prefetcher::new(l.clone(), dp, LoaderState::default(), 1),
            Err(DataError::Loader(_))
        ));
    }
}
