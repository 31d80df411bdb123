//! Swin's (shifted-)window attention, fused (`crate::ops::window_attention`): one cube per
//! (window, head). The window's keys and values of the head are staged in shared memory (the
//! window padding, the cyclic shift and the partition are the indices they are read at: a padded
//! token's k and v are the projection's bias); each of the first w² units that holds a real
//! token then takes it as the query: its scores (scale·q·k + relative position bias + region
//! mask) and the row in registers, the softmax, P·V written at the query's own map row. Mirrors
//! `shaders/window_attention.wgsl`.

use cubecl::prelude::*;

/// Units per cube: at least one per token of a window (w² ≤ 64).
pub const WG: usize = 64;

/// See the module doc; sizes bounded by `WindowAttentionProblem::gpu_fits`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments, clippy::collapsible_if, clippy::manual_div_ceil)] // nested ifs: runtime tests cubecl keeps apart; no div_ceil in #[cube]
pub fn window_attention(
    qkv: &Array<f32>,
    bias: &Array<f32>,
    table: &Array<f32>,
    out: &mut Array<f32>,
    h: u32,
    w: u32,
    window: u32,
    shift: u32,
    heads: u32,
    head_dim: u32,
    scale: f32,
) {
    let item = (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) as usize;
    let (hh, ww, ws, s) = (h as usize, w as usize, window as usize, shift as usize);
    let (nh, dh) = (heads as usize, head_dim as usize);
    let hp = (hh + ws - 1) / ws * ws;
    let wp = (ww + ws - 1) / ws * ws;
    let per_row = wp / ws;
    if item >= (hp / ws) * per_row * nh {
        terminate!();
    }
    let head = item % nh;
    let win = item / nh;
    let n = ws * ws;
    let c = nh * dh;
    let mut ks = SharedMemory::<f32>::new(2048usize);
    let mut vs = SharedMemory::<f32>::new(2048usize);
    let lid = UNIT_POS as usize;
    let mut idx = lid;
    while idx < n * dh {
        let j = idx / dh;
        let d = idx % dh;
        let y = cell_y(j, win, per_row, ws, s, hp);
        let x = cell_x(j, win, per_row, ws, s, wp);
        if y < hh && x < ww {
            let row = y * ww + x;
            ks[idx] = qkv[row * 3 * c + c + head * dh + d];
            vs[idx] = qkv[row * 3 * c + 2 * c + head * dh + d];
        } else {
            ks[idx] = bias[c + head * dh + d];
            vs[idx] = bias[2 * c + head * dh + d];
        }
        idx += WG;
    }
    sync_cube();
    let yi = cell_y(lid, win, per_row, ws, s, hp);
    let xi = cell_x(lid, win, per_row, ws, s, wp);
    // one unit per real token of the window: padded queries are cropped away
    if lid < n && yi < hh && xi < ww {
        let i = lid;
        let row_i = yi * ww + xi;
        let region_i = region(i, win, per_row, ws, s, hp, wp);
        let mut q = Array::<f32>::new(64usize);
        for d in 0..dh {
            q[d] = qkv[row_i * 3 * c + head * dh + d] * scale;
        }
        let mut sc = Array::<f32>::new(64usize);
        let mut mx = f32::new(-3.4e38);
        for j in 0..n {
            let mut acc = 0.0f32;
            for d in 0..dh {
                acc += q[d] * ks[j * dh + d];
            }
            let dy = i / ws + ws - 1 - j / ws;
            let dx = i % ws + ws - 1 - j % ws;
            acc += table[(dy * (2 * ws - 1) + dx) * nh + head];
            if s > 0 {
                if region(j, win, per_row, ws, s, hp, wp) != region_i {
                    acc += -100.0f32;
                }
            }
            sc[j] = acc;
            mx = max(mx, acc);
        }
        let mut sum = 0.0f32;
        for j in 0..n {
            let e = (sc[j] - mx).exp();
            sc[j] = e;
            sum += e;
        }
        let inv = 1.0f32 / sum;
        for d in 0..dh {
            let mut o = 0.0f32;
            for j in 0..n {
                o += sc[j] * vs[j * dh + d];
            }
            out[row_i * c + head * dh + d] = o * inv;
        }
    }
}

/// The row in the padded map of token `j` of window `win`: its shifted-map row, shifted back.
#[cube]
fn cell_y(j: usize, win: usize, per_row: usize, ws: usize, s: usize, hp: usize) -> usize {
    ((win / per_row) * ws + j / ws + s) % hp
}

/// The column in the padded map of token `j` of window `win`.
#[cube]
fn cell_x(j: usize, win: usize, per_row: usize, ws: usize, s: usize, wp: usize) -> usize {
    ((win % per_row) * ws + j % ws + s) % wp
}

/// The shift region (0..9) of token `j` of window `win`, in the shifted map.
#[cube]
fn region(j: usize, win: usize, per_row: usize, ws: usize, s: usize, hp: usize, wp: usize) -> usize {
    let ys = (win / per_row) * ws + j / ws;
    let xs = (win % per_row) * ws + j % ws;
    part(ys, hp, ws, s) * 3 + part(xs, wp, ws, s)
}

/// Which of the three shift slices (…, n − w), (n − w, n − s), (n − s, …) `v` lies in.
#[cube]
fn part(v: usize, n: usize, ws: usize, s: usize) -> usize {
    let mut r = 2usize;
    if v < n - s {
        r = 1usize;
    }
    if v < n - ws {
        r = 0usize;
    }
    r
}
