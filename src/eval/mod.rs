//! Evaluation of `rlipv2 detect` outputs against dataset annotations, computing what the official
//! evaluators compute: [`hico`] (HICO-DET mAP, Default setting and the zero-shot splits).
//! [`detections`] reads the detections (a directory of per-image JSON files, or JSON Lines).

pub mod detections;
pub mod hico;
