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
    /// Scene-graph sets (Open Images v6): the subject is classified among the objects and its
    /// score multiplies the relation's (`PostProcessSGG`); HOI sets fix it to `objects[0]`.
    pub subject_classified: bool,
}

/// Where the Open Images v6 label texts come from: they are not in the official repo.
pub const OI_DICT_HINT: &str = "the Open Images v6 label texts are not in the official repo: pass the categories dict that its convert_OI_annotations.py writes, --labels PATH/OI_SGG_trainval_test_categories_dict.json ({\"obj\": 288 classes, \"rel\": 30 relations}, used verbatim)";

/// The text appended after the object names (`--use_no_obj_token`, engine.py:366-369).
pub const NO_OBJECTS: &str = "no objects";

fn lines(s: &str) -> Vec<String> {
    s.lines().map(str::to_string).collect()
}

impl LabelSet {
    /// `hico`, `vcoco`, or the path of a JSON file: `{"objects": [...], "verbs": [...]}` (a
    /// custom HOI set) or the Open Images v6 categories dict `{"obj": [...], "rel": [...]}` that
    /// the official `convert_OI_annotations.py` writes (a scene-graph set, texts verbatim). Files
    /// need a tokenizer to encode.
    pub fn resolve(spec: &str) -> crate::Result<LabelSet> {
        use crate::Error;
        if let Some(s) = LabelSet::builtin(spec) {
            return Ok(s);
        }
        if spec == "oi" {
            return Err(Error::Limit { op: "labels", what: "oi".into(), reason: OI_DICT_HINT.into() });
        }
        let path = std::path::PathBuf::from(spec);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum File {
            Custom { objects: Vec<String>, verbs: Vec<String> },
            OpenImages { obj: Vec<String>, rel: Vec<String> },
        }
        let f: File = serde_json::from_str(&text).map_err(|e| Error::Format {
            file: path.clone(),
            reason: format!(
                "expected {{\"objects\": [...], \"verbs\": [...]}}, an Open Images categories dict {{\"obj\": [...], \"rel\": [...]}} (or hico / vcoco): {e}"
            ),
        })?;
        let (name, objects, verbs, subject_classified) = match f {
            File::Custom { objects, verbs } => (format!("custom:{spec}"), objects, verbs, false),
            File::OpenImages { obj, rel } => (format!("oi:{spec}"), obj, rel, true),
        };
        if objects.is_empty() || verbs.is_empty() {
            return Err(Error::Format { file: path, reason: "needs at least one object and one verb".into() });
        }
        Ok(LabelSet { name, objects, verbs, valid_pairs: None, subject_classified })
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
                    subject_classified: false,
                })
            }
            "vcoco" => Some(LabelSet {
                name: name.into(),
                objects: lines(include_str!("labels/vcoco_objects.txt")),
                verbs: lines(include_str!("labels/vcoco_verbs.txt")),
                valid_pairs: None,
                subject_classified: false,
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
