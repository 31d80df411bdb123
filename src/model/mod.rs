//! The RLIPv2 model description: the configuration a checkpoint was trained with and the
//! checkpoint schema it implies. No device, no weights.

pub mod config;
pub mod labels;
pub mod npsort;
pub mod postprocess;
pub mod preprocess;
pub mod schema;

pub use config::Config;
