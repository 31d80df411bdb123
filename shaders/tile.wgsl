// tile.wgsl — the prelude every GEMM-like module is assembled with (src/shaders.rs puts it in
// front of gemm.wgsl, conv2d.wgsl and sparse_fusion.wgsl): the one register-blocked GEMM
// mainloop per tile size. Not a module on its own.
//
// A module that uses the mainloops defines, for C[row, col] = Σ_k A[row, k] · B[col, k]:
//   fn tile_a(ctx: u32, row0: u32, r: u32, k: u32, kk: u32) -> f32
//       A[row0 + r, k], 0 outside A (kk: k's index in its slab)
//   fn tile_b(ctx: u32, col: u32, k: u32) -> f32
//       B[col, k], 0 outside B
//   fn tile_slab(ctx: u32, lid: u32, k0: u32)
//       called by every invocation before slab k0 .. is staged (per-slab parameters; may barrier)
// `ctx` is the caller's, passed through unchanged (the image of a conv, the job of gemm_jobs);
// it must be uniform over the workgroup.
//
// Mainloops (256 invocations; the caller stores the block through its own epilogue):
//   tile64   64×64 tile at (row0, col0); invocation (ty, tx) = (lid / 16, lid % 16) holds rows
//            ty·4 + i in acc[i], columns tx·4 .. + 4; K in 16-deep slabs staged as vec4s
//            [k][row (column) quad]: two vec4 reads from workgroup memory per 16 FMAs.
//   tile128  128×128 tile, an 8×8 block per invocation: rows ty·4 + i (acc[2i + h]) and
//            64 + ty·4 + i (acc[8 + 2i + h]) against column quads tx (h = 0) and 16 + tx (h = 1);
//            K in 8-deep slabs: four vec4 reads per 64 FMAs. `b_lanes`: stage B with columns
//            along the invocations (neighbouring invocations read neighbouring columns at one k:
//            coalesced when B[col, k] is contiguous in col, as a conv's pixels are); otherwise
//            k along the invocations (contiguous in k, as a row-major weight).
// The FMA loops are unrolled with constant indices so the accumulators stay in registers.

var<workgroup> tile_as: array<vec4<f32>, 256>;
var<workgroup> tile_bs: array<vec4<f32>, 256>;

// Stages one slab position of this invocation: rows row0 + qa·4 .. + 4 of A at k0 + ka into
// tile_as[ka·quads + qa], columns col0 + qb·4 .. + 4 of B at k0 + kb into tile_bs[kb·quads + qb]
// (quads: row quads per slab row, 16 or 32); zeros past K.
fn tile_stage(ctx: u32, row0: u32, col0: u32, kdim: u32, k0: u32, ka: u32, qa: u32, kb: u32, qb: u32, quads: u32) {
    var av = vec4(0.0);
    var bv = vec4(0.0);
    for (var q = 0u; q < 4u; q++) {
        if (k0 + ka < kdim) { av[q] = tile_a(ctx, row0, qa * 4u + q, k0 + ka, ka); }
        if (k0 + kb < kdim) { bv[q] = tile_b(ctx, col0 + qb * 4u + q, k0 + kb); }
    }
    tile_as[ka * quads + qa] = av;
    tile_bs[kb * quads + qb] = bv;
}

fn tile64(ctx: u32, lid: u32, row0: u32, col0: u32, kdim: u32) -> array<vec4<f32>, 4> {
    let ty = lid / 16u;
    let tx = lid % 16u;
    var acc: array<vec4<f32>, 4>;
    let kk = lid % 16u;                           // this invocation stages k = k0 + kk of
    let q4 = lid / 16u;                           // rows (and columns) q4·4 .. q4·4 + 4
    for (var k0 = 0u; k0 < kdim; k0 += 16u) {
        tile_slab(ctx, lid, k0);
        tile_stage(ctx, row0, col0, kdim, k0, kk, q4, kk, q4, 16u);
        workgroupBarrier();
        for (var s = 0u; s < 16u; s++) {
            let a = tile_as[s * 16u + ty];
            let b = tile_bs[s * 16u + tx];
            acc[0] = fma(vec4(a.x), b, acc[0]);
            acc[1] = fma(vec4(a.y), b, acc[1]);
            acc[2] = fma(vec4(a.z), b, acc[2]);
            acc[3] = fma(vec4(a.w), b, acc[3]);
        }
        workgroupBarrier();
    }
    return acc;
}

fn tile128(ctx: u32, lid: u32, row0: u32, col0: u32, kdim: u32, b_lanes: bool) -> array<vec4<f32>, 16> {
    let ty = lid / 16u;
    let tx = lid % 16u;
    var acc: array<vec4<f32>, 16>;
    let kk = lid % 8u;                            // A: k = k0 + kk of rows q4·4 .. + 4
    let q4 = lid / 8u;
    let kb = select(kk, lid / 32u, b_lanes);      // B: k = k0 + kb of columns p4·4 .. + 4
    let p4 = select(q4, lid % 32u, b_lanes);
    for (var k0 = 0u; k0 < kdim; k0 += 8u) {
        tile_slab(ctx, lid, k0);
        tile_stage(ctx, row0, col0, kdim, k0, kk, q4, kb, p4, 32u);
        workgroupBarrier();
        for (var s = 0u; s < 8u; s++) {
            let a0 = tile_as[s * 32u + ty];
            let a1 = tile_as[s * 32u + 16u + ty];
            let b0 = tile_bs[s * 32u + tx];
            let b1 = tile_bs[s * 32u + 16u + tx];
            acc[0] = fma(vec4(a0.x), b0, acc[0]);
            acc[1] = fma(vec4(a0.x), b1, acc[1]);
            acc[8] = fma(vec4(a1.x), b0, acc[8]);
            acc[9] = fma(vec4(a1.x), b1, acc[9]);
            acc[2] = fma(vec4(a0.y), b0, acc[2]);
            acc[3] = fma(vec4(a0.y), b1, acc[3]);
            acc[10] = fma(vec4(a1.y), b0, acc[10]);
            acc[11] = fma(vec4(a1.y), b1, acc[11]);
            acc[4] = fma(vec4(a0.z), b0, acc[4]);
            acc[5] = fma(vec4(a0.z), b1, acc[5]);
            acc[12] = fma(vec4(a1.z), b0, acc[12]);
            acc[13] = fma(vec4(a1.z), b1, acc[13]);
            acc[6] = fma(vec4(a0.w), b0, acc[6]);
            acc[7] = fma(vec4(a0.w), b1, acc[7]);
            acc[14] = fma(vec4(a1.w), b0, acc[14]);
            acc[15] = fma(vec4(a1.w), b1, acc[15]);
        }
        workgroupBarrier();
    }
    return acc;
}

// Row `i` (0 .. 8) of a tile128 block: its offset in the 128-row tile.
fn tile128_row(ty: u32, i: u32) -> u32 {
    return (i / 4u) * 64u + ty * 4u + i % 4u;
}
