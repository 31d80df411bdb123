//! Owned weight tensors in a problem's official name order, with typed views.

use crate::problem::{BertLayerWeights, GatedCrossAttnWeights};

/// Named f32 tensors held by value (files, seeded weights), viewed as the ops' weight structs.
#[derive(Clone, Debug, Default)]
pub struct OwnedWeights {
    /// Names, in the order of `tensors`.
    pub names: Vec<&'static str>,
    /// Values, row-major.
    pub tensors: Vec<Vec<f32>>,
}

impl OwnedWeights {
    fn slices<const N: usize>(&self) -> [&[f32]; N] {
        std::array::from_fn(|i| self.tensors[i].as_slice())
    }
    /// View as fusion weights (tensors in `GatedCrossAttnProblem::weight_shapes` order).
    pub fn as_fusion(&self) -> GatedCrossAttnWeights<'_> {
        GatedCrossAttnWeights::from_slices(self.slices::<18>())
    }
    /// View as language-layer weights (tensors in `BertLayerProblem::weight_shapes` order).
    pub fn as_bert(&self) -> BertLayerWeights<'_> {
        BertLayerWeights::from_slices(self.slices::<16>())
    }
    /// Mutable access by official name.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Vec<f32>> {
        let i = self.names.iter().position(|n| *n == name)?;
        self.tensors.get_mut(i)
    }
}
