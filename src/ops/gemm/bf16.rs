//! The cpu backend's opt-in bf16 GEMM (`--precision bf16`): both operands rounded to bf16
//! (round to nearest even, as PyTorch's `.bfloat16()`), products summed in f32. On CPUs with
//! AVX512-BF16 one `vdpbf16ps` does two multiply-adds per f32 lane (whether that beats f32 FMA
//! depends on the CPU: [`kernel_name`] measures it); elsewhere a portable kernel computes the same
//! products. The two can differ in the last bits: `vdpbf16ps` adds the odd-k product first and
//! treats bf16 subnormals as zero, the portable kernel adds both products' sum and keeps them.
//!
//! Operands are packed once per call into k-pairs (the two bf16 of k = 2p and 2p + 1 in one
//! 32-bit word, even k in the low half, as `vdpbf16ps` pairs them): the right operand in panels
//! of [`NR`] columns, the left one per task in micro-panels of [`MR`] rows. A [`MR`]×[`NR`] tile
//! of the product stays in registers over the whole k, so `dst` is read and written once.

use rayon::prelude::*;

use super::cpu::View;

/// Rows of a register tile.
const MR: usize = 12;
/// Columns of a register tile: two 16-lane f32 vectors.
const NR: usize = 32;
/// Rows of the left operand one task packs and runs (8 micro-panels: about 1 MB of bf16 at k = 4608).
const MC: usize = 96;

/// f32 → bf16 bits, round to nearest even; a NaN stays a (quiet) NaN. Branch-free, so the
/// packing loops vectorize.
#[inline(always)]
fn bf16_bits(x: f32) -> u32 {
    let b = x.to_bits();
    let rounded = b.wrapping_add(0x7FFF + ((b >> 16) & 1)) >> 16;
    let quiet = (b >> 16) | 0x40;
    if x.is_nan() {
        quiet & 0xFFFF
    } else {
        rounded
    }
}

#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    bf16_bits(lo) | bf16_bits(hi) << 16
}

/// `out[p] = pair(src[2p], src[2p + 1])`, a zero past the end of an odd `src`.
#[inline(always)]
fn pairs_of(src: &[f32], out: &mut [u32]) {
    let (even, tail) = src.split_at(src.len() & !1);
    for (o, two) in out.iter_mut().zip(even.chunks_exact(2)) {
        *o = pair(two[0], two[1]);
    }
    if let Some(&last) = tail.first() {
        out[even.len() / 2] = pair(last, 0.0);
    }
}

/// `out[c] = pair(lo[c], hi[c])` (`hi` absent: zeros).
#[inline(always)]
fn pairs_across(lo: &[f32], hi: Option<&[f32]>, out: &mut [u32]) {
    match hi {
        Some(hi) => {
            for ((o, &l), &h) in out.iter_mut().zip(lo).zip(hi) {
                *o = pair(l, h);
            }
        }
        None => {
            for (o, &l) in out.iter_mut().zip(lo) {
                *o = pair(l, 0.0);
            }
        }
    }
}

/// The packing loops compiled for AVX-512 where the kernel is (they are a third of the work at
/// small output widths when left to the baseline SSE2 code).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pairs_of_avx512(src: &[f32], out: &mut [u32]) {
    pairs_of(src, out)
}
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn pairs_across_avx512(lo: &[f32], hi: Option<&[f32]>, out: &mut [u32]) {
    pairs_across(lo, hi, out)
}

fn pack_pairs_of(fast: bool, src: &[f32], out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: `fast` is set only where the CPU has AVX-512 (`native`).
        return unsafe { pairs_of_avx512(src, out) };
    }
    let _ = fast;
    pairs_of(src, out)
}

fn pack_pairs_across(fast: bool, lo: &[f32], hi: Option<&[f32]>, out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if fast {
        // SAFETY: as above.
        return unsafe { pairs_across_avx512(lo, hi, out) };
    }
    let _ = fast;
    pairs_across(lo, hi, out)
}

/// Which kernel this CPU runs and whether it pays here: having AVX512-BF16 is not enough (on
/// the Xeon this was developed on, `vdpbf16ps` retires at under half the f32 FMA rate).
pub(crate) fn kernel_name() -> String {
    match peak_rates() {
        Some((bf16, f32)) => format!(
            "AVX512-BF16 (vdpbf16ps); peak per core measured here: bf16 {bf16:.0} vs f32 FMA {f32:.0} GFLOP/s{}",
            if bf16 > f32 { "" } else { ", so bf16 is slower than f32 on this CPU" }
        ),
        None => "portable (bf16-rounded inputs, f32 sums: no speed-up on this CPU)".into(),
    }
}

/// This core's peak GFLOP/s with `vdpbf16ps` and with f32 FMA (24 independent accumulators in
/// registers, the best of three ≈ 2 ms runs each), measured once per process; `None` without
/// AVX512-BF16.
pub(crate) fn peak_rates() -> Option<(f64, f64)> {
    static RATES: std::sync::OnceLock<Option<(f64, f64)>> = std::sync::OnceLock::new();
    *RATES.get_or_init(|| {
        if !native() {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            let best = |f: &dyn Fn() -> f64| (0..3).map(|_| f()).fold(0.0, f64::max);
            // SAFETY: native() checked AVX512-F/BW/BF16.
            Some((best(&|| unsafe { avx512::peak_bf16() }), best(&|| unsafe { avx512::peak_f32() })))
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    })
}

fn native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The destination, shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct Dst {
    ptr: *mut f32,
    rs: usize,
}
// SAFETY: tasks write disjoint tiles of one buffer (each (row block, panel) pair once).
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}

impl Dst {
    /// Element (row, col). Safety: inside the buffer.
    unsafe fn at(self, row: usize, col: usize) -> *mut f32 {
        self.ptr.add(row * self.rs + col)
    }
}

/// `dst [m×n]` (row stride `dst_rs`, unit column stride) `=`, or `+=` when `accumulate`,
/// `bf16(lhs) [m×k] · bf16(rhs) [k×n]` with f32 sums.
#[allow(clippy::too_many_arguments)] // three dimensions, three operands, two flags
pub(crate) fn matmul_into(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    lhs: View,
    rhs: View,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // an empty sum: what the f32 path writes
        if !accumulate {
            (0..m).for_each(|r| dst[r * dst_rs..r * dst_rs + n].fill(0.0));
        }
        return;
    }
    // rows must not overlap: tasks write disjoint row blocks through a raw pointer
    assert!(m == 1 || dst_rs >= n, "bf16 matmul destination rows overlap");
    let extent = (m - 1).checked_mul(dst_rs).and_then(|e| e.checked_add(n));
    assert!(extent.is_some_and(|e| dst.len() >= e), "bf16 matmul destination out of bounds");
    let kp = k.div_ceil(2);
    let panels = n.div_ceil(NR);
    // right operand: panel j, pair p, column c at b[(j·kp + p)·NR + c]
    let fast = native();
    let mut b = vec![0u32; panels * kp * NR];
    b.par_chunks_mut(kp * NR).enumerate().for_each(|(j, panel)| {
        let (c0, cols) = (j * NR, NR.min(n - j * NR));
        if rhs.cs == 1 {
            // rows of the operand (conv2d's columns): two rows make a pair row of the panel
            let row = |kk: usize| &rhs.data[kk * rhs.rs + c0..kk * rhs.rs + c0 + cols];
            for p in 0..kp {
                let hi = (2 * p + 1 < k).then(|| row(2 * p + 1));
                pack_pairs_across(fast, row(2 * p), hi, &mut panel[p * NR..p * NR + cols]);
            }
        } else if rhs.rs == 1 {
            // columns contiguous in k (a Linear's weight rows): one column at a time
            let mut tmp = vec![0u32; kp];
            for c in 0..cols {
                let at = (c0 + c) * rhs.cs;
                pack_pairs_of(fast, &rhs.data[at..at + k], &mut tmp);
                for (p, &w) in tmp.iter().enumerate() {
                    panel[p * NR + c] = w;
                }
            }
        } else {
            for c in 0..cols {
                let at = |kk: usize| if kk < k { rhs.data[kk * rhs.rs + (c0 + c) * rhs.cs] } else { 0.0 };
                for p in 0..kp {
                    panel[p * NR + c] = pair(at(2 * p), at(2 * p + 1));
                }
            }
        }
    });
    // tasks: row blocks × groups of panels, enough of them to keep every thread busy
    let row_blocks = m.div_ceil(MC);
    let groups = (4 * rayon::current_num_threads()).div_ceil(row_blocks).clamp(1, panels);
    let per_group = panels.div_ceil(groups);
    let out = Dst { ptr: dst.as_mut_ptr(), rs: dst_rs };
    (0..row_blocks * groups).into_par_iter().for_each(|t| {
        let (rb, g) = (t / groups, t % groups);
        let (r0, rows) = (rb * MC, MC.min(m - rb * MC));
        // left operand: micro-panel i, pair p, row r at a[(i·kp + p)·MR + r]
        let micro = rows.div_ceil(MR);
        let mut a = vec![0u32; micro * kp * MR];
        let mut tmp = vec![0u32; kp];
        for r in 0..rows {
            let row = r0 + r;
            let (i, ri) = (r / MR, r % MR);
            if lhs.cs == 1 {
                pack_pairs_of(fast, &lhs.data[row * lhs.rs..row * lhs.rs + k], &mut tmp);
            } else {
                let at = |kk: usize| if kk < k { lhs.data[row * lhs.rs + kk * lhs.cs] } else { 0.0 };
                for (p, w) in tmp.iter_mut().enumerate() {
                    *w = pair(at(2 * p), at(2 * p + 1));
                }
            }
            for (p, &w) in tmp.iter().enumerate() {
                a[(i * kp + p) * MR + ri] = w;
            }
        }
        for j in g * per_group..((g + 1) * per_group).min(panels) {
            let bp = &b[j * kp * NR..(j + 1) * kp * NR];
            for i in 0..micro {
                let ap = &a[i * kp * MR..(i + 1) * kp * MR];
                let (row, col) = (r0 + i * MR, j * NR);
                let tile = Tile { rows: MR.min(m - row), cols: NR.min(n - col), accumulate };
                // SAFETY: the tile lies inside dst (asserted above: row < m, col < n, extents
                // clamped), and no other task writes it.
                unsafe {
                    let d = out.at(row, col);
                    #[cfg(target_arch = "x86_64")]
                    if fast {
                        avx512::tile(kp, ap, bp, d, out.rs, tile);
                        continue;
                    }
                    let _ = fast;
                    portable_tile(kp, ap, bp, d, out.rs, tile);
                }
            }
        }
    });
}

/// The part of a register tile inside the product, and whether it adds to `dst`.
#[derive(Clone, Copy)]
struct Tile {
    rows: usize,
    cols: usize,
    accumulate: bool,
}

#[inline]
fn lo(w: u32) -> f32 {
    f32::from_bits(w << 16)
}
#[inline]
fn hi(w: u32) -> f32 {
    f32::from_bits(w & 0xFFFF_0000)
}

/// The AVX512-BF16 tile's products in plain f32 (per lane: acc + (lo·lo + hi·hi); see the module
/// note for how its rounding differs from `vdpbf16ps`).
unsafe fn portable_tile(kp: usize, a: &[u32], b: &[u32], dst: *mut f32, rs: usize, t: Tile) {
    let mut acc = [[0f32; NR]; MR];
    for p in 0..kp {
        let bw = &b[p * NR..(p + 1) * NR];
        for (r, row) in acc.iter_mut().enumerate() {
            let aw = a[p * MR + r];
            let (al, ah) = (lo(aw), hi(aw));
            for (o, &w) in row.iter_mut().zip(bw) {
                *o += al * lo(w) + ah * hi(w);
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(t.rows) {
        for (c, &v) in row.iter().enumerate().take(t.cols) {
            let d = dst.add(r * rs + c);
            *d = if t.accumulate { *d + v } else { v };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;
    use std::hint::black_box;
    use std::time::Instant;

    use super::{Tile, MR, NR};

    const PEAK_STEPS: usize = 40_000;

    /// GFLOP/s of `vdpbf16ps` on 24 independent accumulators (2 multiply-adds per f32 lane).
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn peak_bf16() -> f64 {
        let a: __m512bh = std::mem::transmute(_mm512_set1_epi32(black_box(0x3f80_3f80u32 as i32)));
        let b: __m512bh = std::mem::transmute(_mm512_set1_epi32(black_box(0x3c00_3c00u32 as i32)));
        let mut acc = [_mm512_setzero_ps(); 24];
        let t = Instant::now();
        for _ in 0..PEAK_STEPS {
            for c in acc.iter_mut() {
                *c = _mm512_dpbf16_ps(*c, a, b);
            }
        }
        black_box(acc);
        (PEAK_STEPS * 24 * 64) as f64 / t.elapsed().as_secs_f64() / 1e9
    }

    /// GFLOP/s of 512-bit f32 FMA on 24 independent accumulators.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn peak_f32() -> f64 {
        let (a, b) = (_mm512_set1_ps(black_box(1.0)), _mm512_set1_ps(black_box(0.0078125)));
        let mut acc = [_mm512_setzero_ps(); 24];
        let t = Instant::now();
        for _ in 0..PEAK_STEPS {
            for c in acc.iter_mut() {
                *c = _mm512_fmadd_ps(a, b, *c);
            }
        }
        black_box(acc);
        (PEAK_STEPS * 24 * 32) as f64 / t.elapsed().as_secs_f64() / 1e9
    }

    /// One MR×NR tile over all `kp` pairs: 24 accumulators, two vectors of the right operand and
    /// one broadcast pair of the left per step.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile(kp: usize, a: &[u32], b: &[u32], dst: *mut f32, rs: usize, t: Tile) {
        debug_assert!(a.len() >= kp * MR && b.len() >= kp * NR);
        let (a, b) = (a.as_ptr(), b.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for p in 0..kp {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_epi32(b.add(p * NR) as *const i32));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_epi32(b.add(p * NR + 16) as *const i32));
            let ap = a.add(p * MR);
            for (r, c) in acc.iter_mut().enumerate() {
                let ar: __m512bh = std::mem::transmute(_mm512_set1_epi32(*ap.add(r) as i32));
                c[0] = _mm512_dpbf16_ps(c[0], ar, b0);
                c[1] = _mm512_dpbf16_ps(c[1], ar, b1);
            }
        }
        let cols0 = t.cols.min(16);
        let m0: __mmask16 = if cols0 == 16 { 0xFFFF } else { (1u16 << cols0) - 1 };
        let m1: __mmask16 = if t.cols <= 16 {
            0
        } else if t.cols == 32 {
            0xFFFF
        } else {
            (1u16 << (t.cols - 16)) - 1
        };
        for (r, c) in acc.iter().enumerate().take(t.rows) {
            let d = dst.add(r * rs);
            let (mut v0, mut v1) = (c[0], c[1]);
            if t.accumulate {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, d));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, d.wrapping_add(16)));
            }
            _mm512_mask_storeu_ps(d, m0, v0);
            // wrapping: with 16 or fewer columns the mask is empty and the address may lie past dst
            _mm512_mask_storeu_ps(d.wrapping_add(16), m1, v1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_bf16(x: f32) -> f32 {
        f32::from_bits(bf16_bits(x) << 16)
    }

    #[test]
    fn rounding_is_to_nearest_even_and_keeps_nan() {
        assert_eq!(round_bf16(1.0), 1.0);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties to even (1.0)
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_bf16(-0.0).to_bits(), (-0.0f32).to_bits());
    }
}
