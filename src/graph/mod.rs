//! Layer 4: the inference graph, built from backend ops. So far: the RoBERTa text encoder that
//! turns label texts into the language tokens of ALIF.

pub mod text;
