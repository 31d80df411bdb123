//! Built-in label sets (spec §2.4): the texts the text encoder sees, in the official order —
//! object names, then `no objects`, then verb names — and, for HICO, the 600 valid
//! (verb, object) pairs the evaluator keeps (spec §2.8). Written from the official data files by
//! `tools/label_sets.py`.

/// A label set: `objects` (the first is the subject class `person`), `verbs`, and where known the
/// valid-pair mask `valid[verb · objects.len() + object]`.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelSet {
    /// `hico`, `vcoco` or `custom:<file>`.
    pub name: String,
    /// Object names; index = object label.
    pub objects: Vec<String>,
    /// Verb names; index = verb label.
    pub verbs: Vec<String>,
    /// `[objects × verbs]` valid-pair table (HICO), or none (every pair valid).
    pub valid_pairs: Option<Vec<bool>>,
}

/// The text appended after the object names (`--use_no_obj_token`, engine.py:366-369).
pub const NO_OBJECTS: &str = "no objects";

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

impl LabelSet {
    /// `hico`, `vcoco`, or the path of a JSON file `{"objects": [...], "verbs": [...]}` (a
    /// custom set; it needs a tokenizer to encode).
    pub fn resolve(spec: &str) -> crate::Result<LabelSet> {
        use crate::Error;
        if let Some(s) = LabelSet::builtin(spec) {
            return Ok(s);
        }
        let path = std::path::PathBuf::from(spec);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        #[derive(serde::Deserialize)]
        struct Custom {
            objects: Vec<String>,
            verbs: Vec<String>,
        }
        let c: Custom = serde_json::from_str(&text).map_err(|e| Error::Format {
            file: path.clone(),
            reason: format!("expected {{\"objects\": [...], \"verbs\": [...]}} (or hico / vcoco): {e}"),
        })?;
        if c.objects.is_empty() || c.verbs.is_empty() {
            return Err(Error::Format { file: path, reason: "needs at least one object and one verb".into() });
        }
        Ok(LabelSet { name: format!("custom:{spec}"), objects: c.objects, verbs: c.verbs, valid_pairs: None })
    }

    /// `hico` (80 objects, 117 verbs, 600 valid pairs) or `vcoco` (81 objects incl. `missing
    /// objects`, 29 verbs).
    pub fn builtin(name: &str) -> Option<LabelSet> {
        match name {
            "hico" => {
                let valid = include_str!("labels/hico_valid_pairs.txt")
                    .lines()
                    .flat_map(|l| l.bytes().map(|b| b == b'1'))
                    .collect();
                Some(LabelSet {
                    name: name.into(),
                    objects: lines(include_str!("labels/hico_objects.txt")),
                    verbs: lines(include_str!("labels/hico_verbs.txt")),
                    valid_pairs: Some(valid),
                })
            }
            "vcoco" => Some(LabelSet {
                name: name.into(),
                objects: lines(include_str!("labels/vcoco_objects.txt")),
                verbs: lines(include_str!("labels/vcoco_verbs.txt")),
                valid_pairs: None,
            }),
            _ => None,
        }
    }

    /// The texts in encoder order: objects, `no objects`, verbs (T = objects + 1 + verbs).
    pub fn texts(&self) -> Vec<String> {
        self.objects.iter().cloned().chain([NO_OBJECTS.to_string()]).chain(self.verbs.iter().cloned()).collect()
    }

    /// Whether the official evaluation of this set scores every query pair (V-COCO's export),
    /// so `detect` writes them all.
    pub fn evaluated_on_pairs(&self) -> bool {
        self.name == "vcoco"
    }

    /// Whether (verb, object) is a valid pair; every pair is valid without a mask.
    pub fn is_valid(&self, verb: usize, object: usize) -> bool {
        self.valid_pairs.as_ref().is_none_or(|v| v[verb * self.objects.len() + object])
    }
}
