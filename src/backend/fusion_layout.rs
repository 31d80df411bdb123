// The ALIF arena's contract between the host plan (`fusion_plan.rs`), the cubecl kernels
// (`kernels/sparse_fusion.rs`) and the WGSL (`shaders/sparse_fusion.wgsl`), defined once here.
// `build.rs` includes this file to write the WGSL constants that `crate::shaders` puts in front
// of `sparse_fusion.wgsl`, so the shader cannot disagree with the Rust side.

macro_rules! contract {
    ($(#[doc = $group:literal] $all:ident: $ty:ty { $($(#[doc = $doc:literal])* $name:ident = $v:literal,)* })*) => {
        $(
            $($(#[doc = $doc])* pub const $name: $ty = $v;)*
            #[doc = $group]
            pub const $all: &[(&str, u32)] = &[$((stringify!($name), $v as u32)),*];
        )*
    };
}

contract! {
    /// Slots of the arena offset table `p.off`: where each intermediate or weight of a round lives.
    SLOTS: usize {
        /// Visual queries `[Nv', E]`.
        O_Q = 0,
        /// Language keys `[T', E]`.
        O_K = 1,
        /// Visual values `[Nv', E]`.
        O_VV = 2,
        /// Language values `[T', E]`.
        O_VL = 3,
        /// Visual context (attention over the labels) `[Nv', E]`.
        O_CTXV = 4,
        /// Language context (attention over the visual rows) `[T', E]`.
        O_CTXL = 5,
        /// RoBERTa layer: queries, keys, values `[T', H]`.
        O_LQ = 6,
        O_LK = 7,
        O_LV = 8,
        /// RoBERTa layer: the attention block's output after its LayerNorm `[T', H]`.
        O_A = 9,
        /// RoBERTa layer: the FFN's hidden layer `[T', FFN]`.
        O_INTER = 10,
        /// The round's language output `[T', H]`.
        O_LOUT = 11,
        /// The gated language state entering the RoBERTa layer `[T', H]`.
        O_LNEW = 12,
        /// The label mask `[B, T]` (1 = label).
        O_MASK = 13,
        /// `attention.output.dense.weight`, transposed: `[in, out]`.
        O_WO = 14,
        O_BO = 15,
        /// The RoBERTa attention block's LayerNorm.
        O_N1W = 16,
        O_N1B = 17,
        /// FFN down-projection + residual, before the last LayerNorm `[T', H]`.
        O_INTER2 = 18,
        /// The RoBERTa FFN block's LayerNorm.
        O_N2W = 20,
        O_N2B = 21,
    }
    /// Flags of a GEMM job (`gemm_jobs`): its prologue and epilogue.
    FLAGS: u32 {
        /// LayerNorm prologue on the A rows (ln_w, ln_b).
        F_LN = 1,
        /// Add the pos rows after the LayerNorm.
        F_POS = 2,
        /// A and pos rows are image rows (mapped to the last level).
        F_MAP_A = 4,
        /// GELU epilogue.
        F_GELU = 8,
        /// Store each row's (mean, rstd) at `stat`.
        F_STATS = 16,
        /// `out = LN(res row; stat, ln_w, ln_b) + g·y`.
        F_GATE = 32,
        /// Out and res rows are image rows (mapped).
        F_MAP_OUT = 64,
        /// `out = y + res[row, col]` (plain residual).
        F_RESID = 128,
    }
}
