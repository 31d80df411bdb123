//! The JSON header of a safetensors file read as an ordered list of entries, refusing a name
//! that appears twice (a JSON map would keep one of them silently and leave the other's bytes
//! unaccounted for).

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};

/// Header entries in file order (`__metadata__` included).
pub(crate) struct Entries(pub Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Unique;
        impl<'de> Visitor<'de> for Unique {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of tensor entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Entries, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, serde_json::Value>()? {
                    if !seen.insert(k.clone()) {
                        return Err(A::Error::custom(format!("`{k}` appears twice in the header")));
                    }
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Unique)
    }
}

/// Checks that no name appears twice in the header of the safetensors bytes `file` (other
/// defects are left to the full parser). `Err` is the reason.
pub(crate) fn check_unique(file: &[u8]) -> Result<(), String> {
    let Some(n) = file.get(..8).map(|h| u64::from_le_bytes(h.try_into().expect("8 bytes"))) else { return Ok(()) };
    let Some(header) = usize::try_from(n).ok().and_then(|n| file.get(8..8usize.checked_add(n)?)) else { return Ok(()) };
    match serde_json::from_slice::<Entries>(header) {
        Err(e) if e.to_string().contains("appears twice") => Err(format!("bad safetensors header: {e}")),
        _ => Ok(()),
    }
}
