//! Side-by-side timing of one ALIF round: `gated_cross_attn` alone, the fused round
//! (`sparse_fusion`) and the same round op by op ([`crate::backend::compose::sparse_fusion`]).

use crate::backend::{self, compose::sparse_fusion as unfused_round, BackendKind, Ops};
use crate::problem::{BertLayerProblem, OwnedWeights, SparseFusionProblem};
use crate::seeded::Rng;

/// Times, per backend: `gated_cross_attn` alone, the fused round (`sparse_fusion`) and the
/// unfused round, at RLIPv2 sizes with seeded weights; returns the printed table.
pub fn run_table(kinds: &[BackendKind], repeat: usize, mut progress: impl FnMut(&str)) -> String {
    let (tokens, start, t) = (22223, 21950, 198);
    let p = SparseFusionProblem::rlipv2(1, tokens, start, t);
    let fw = OwnedWeights::seeded(p.fusion.weight_shapes(), 1);
    let bw = OwnedWeights::seeded(BertLayerProblem::roberta_base(1, t).weight_shapes(), 2);
    let mut rng = Rng::new(3);
    let (memory, pos, lang) =
        (rng.fill(tokens * 256, -1.0, 1.0), rng.fill(tokens * 256, -1.0, 1.0), rng.fill(t * 768, -1.0, 1.0));
    let v: Vec<f32> = memory[start * 256..].to_vec();
    let vp: Vec<f32> = pos[start * 256..].to_vec();
    let (fwv, bwv) = (fw.as_fusion(), bw.as_bert());
    let mut s = format!(
        "sparse_fusion round: B=1 S={tokens} Nv={} T={t}; medians of {repeat} host-to-host calls, except \"resident\": inputs and weights on the device, per round over {} queued rounds + one sync (fused: 8 launches; op by op: 24)\n",
        p.fusion.nv,
        super::LAUNCHES_PER_SAMPLE
    );
    s += &format!(
        "{:<12} {:>18} {:>14} {:>16} {:>8} {:>16} {:>18} {:>8}  device\n",
        "backend",
        "gated_cross_attn",
        "fused round",
        "unfused round",
        "ratio",
        "fused resident",
        "unfused resident",
        "ratio"
    );
    let mut profile = String::new();
    for &kind in kinds {
        let be = match backend::open(kind) {
            Ok(b) => b,
            Err(e) => {
                s += &format!("{:<12} SKIP: {e}\n", kind.name());
                continue;
            }
        };
        progress(&format!("{kind} on {}", be.device()));
        let be = be.as_ref();
        let gca = super::time_host(repeat, || be.gated_cross_attn(&p.fusion, &v, &vp, &lang, &fwv).map(|_| ()));
        let fused = super::time_host(repeat, || {
            let mut m = memory.clone();
            be.sparse_fusion(&p, &mut m, &pos, &lang, None, &fwv, &bwv).map(|_| ())
        });
        let unfused = super::time_host(repeat, || {
            let mut m = memory.clone();
            unfused_round(be, &p, &mut m, &pos, &lang, None, &fwv, &bwv).map(|_| ())
        });
        // the fused round with inputs and weights resident: kernel time only
        let resident = be.prepare_sparse_fusion(&p, &memory, &pos, &lang, None, &fwv, &bwv).and_then(|mut r| {
            let t = super::time_runs(r.as_mut(), repeat)?;
            // each launch of the resident round alone: where the round's time goes
            let stages = super::time_stages(r.as_mut(), repeat)?;
            if !stages.is_empty() {
                let cells: Vec<String> =
                    stages.iter().map(|(name, t)| format!("{name} {:.3}", t.median_s * 1e3)).collect();
                profile += &format!("{:<12} per launch, ms: {}\n", kind.name(), cells.join(" | "));
            }
            Ok(t)
        });
        let unfused_resident = be
            .prepare_sparse_fusion_unfused(&p, &memory, &pos, &lang, None, &fwv, &bwv)
            .and_then(|mut r| super::time_runs(r.as_mut(), repeat));
        let resident_ratio = match (&resident, &unfused_resident) {
            (Ok(f), Ok(u)) => format!("{:.2}×", u.median_s / f.median_s),
            _ => "-".into(),
        };
        let ms = |t: &crate::Result<super::Timing>| {
            t.as_ref().map(|t| format!("{:.3} ms", t.median_s * 1e3)).unwrap_or_else(|_| "-".into())
        };
        let (resident, unfused_resident) = (ms(&resident), ms(&unfused_resident));
        match (gca, fused, unfused) {
            (Ok(g), Ok(f), Ok(u)) => {
                s += &format!(
                    "{:<12} {:>15.2} ms {:>11.2} ms {:>13.2} ms {:>7.2}× {:>16} {:>18} {:>8}  {}\n",
                    kind.name(),
                    g.median_s * 1e3,
                    f.median_s * 1e3,
                    u.median_s * 1e3,
                    u.median_s / f.median_s,
                    resident,
                    unfused_resident,
                    resident_ratio,
                    be.device()
                );
            }
            (g, f, u) => {
                let why =
                    [g.err(), f.err(), u.err()].into_iter().flatten().next().map(|e| e.to_string()).unwrap_or_default();
                s += &format!("{:<12} SKIP: {why}\n", kind.name());
            }
        }
    }
    s + &profile
}
