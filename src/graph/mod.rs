//! Layer 4: the inference graph, built from backend ops. So far: the RoBERTa text encoder that
//! turns label texts into ALIF's language tokens, and the image front (ResNet-50, input
//! projections, positions) that gives the encoder its tokens.

pub mod backbone;
pub mod decoder;
pub mod encoder;
pub mod front;
pub mod text;
