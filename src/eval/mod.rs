//! Evaluation of `rlipv2 detect` outputs against dataset annotations, computing what the official
//! evaluators compute: [`hico`] (HICO-DET mAP, Default setting and the zero-shot splits) and
//! [`vcoco`] (V-COCO agent and role AP, scenarios 1 and 2). [`detections`] reads the detections
//! (a directory of per-image JSON files, or JSON Lines). Both sort as NumPy does
//! ([`crate::model::npsort`]): the official numbers depend on the order of tied scores.

pub mod detections;
pub mod hico;
pub mod vcoco;
