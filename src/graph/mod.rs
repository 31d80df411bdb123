//! Layer 4: the inference graph, built from backend ops: the RoBERTa text encoder that turns
//! label texts into ALIF's language tokens, the image front (ResNet-50, input projections,
//! positions), the ALIF encoder and the decoders with their heads.

pub mod backbone;
mod bind;
pub mod decoder;
pub mod encoder;
pub mod front;
mod layers;
pub mod swin;
pub mod text;
pub mod vars;
