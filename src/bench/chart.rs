//! `bench.svg`: the two scaling sweeps of the suite, drawn with `plotters`. Top row: median time
//! vs size per backend × dtype (log–log); bottom row: speed-up vs the cpu backend (same dtype).

use plotters::prelude::*;

use super::report::Report;
use super::suite::{cpu_median, Record};
use crate::error::{Error, Result};

/// The sweeps drawn, left to right: (case, op, x-axis words).
const SWEEPS: [(&str, &str, &str); 2] = [
    ("queries", "ms_deform_attn/fused-boxes", "decoder queries Q"),
    ("image", "ms_deform_attn/fused-points", "image short side (px), encoder Q = S"),
];

type Series = Vec<(String, Vec<(f64, f64)>)>;

/// Per backend/dtype: (size, value) points of one sweep, value = median ms or speed-up vs cpu.
fn series(records: &[Record], case: &str, op: &str, speedup: bool) -> Series {
    let mut out: Series = Vec::new();
    for r in records.iter().filter(|r| r.case == case && r.op == op) {
        let Some(med) = r.median_ms else { continue };
        let y = if speedup {
            match cpu_median(records, r) {
                Some(c) => c / med,
                None => continue,
            }
        } else {
            med
        };
        if speedup && r.backend == "cpu" {
            continue; // 1× by definition: the grey line
        }
        let name = format!("{}/{}", r.backend, r.dtype);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, pts)) => pts.push((r.size as f64, y)),
            None => out.push((name, vec![(r.size as f64, y)])),
        }
    }
    out
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Format { file: "bench.svg".into(), reason: format!("drawing the chart: {e}") }
}

/// The chart as SVG text.
pub fn svg(report: &Report) -> Result<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, (1280, 900)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let title = format!(
            "rlipv2 {} bench suite: ms_deform_attn scaling{}",
            report.rlipv2,
            if report.quick { " (quick shapes)" } else { "" }
        );
        let root = root.titled(&title, ("sans-serif", 22)).map_err(err)?;
        let panels = root.split_evenly((2, 2));
        // one colour per backend/dtype across all four panels
        let mut names: Vec<String> = Vec::new();
        for r in &report.records {
            let n = format!("{}/{}", r.backend, r.dtype);
            if !names.contains(&n) {
                names.push(n);
            }
        }
        for (row, speedup) in [false, true].into_iter().enumerate() {
            for (col, (case, op, xdesc)) in SWEEPS.into_iter().enumerate() {
                let area = &panels[row * 2 + col];
                let data = series(&report.records, case, op, speedup);
                let caption = format!("{op}: {}", if speedup { "speed-up vs cpu (×)" } else { "median time (ms)" });
                draw_panel(area, &caption, xdesc, &data, &names, speedup)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(buf)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    xdesc: &str,
    data: &Series,
    names: &[String],
    speedup: bool,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let pts = data.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if data.is_empty() || y0.is_nan() || y0 <= 0.0 {
        area.draw(&Text::new(format!("{caption}: no timed cells"), (20, 40), ("sans-serif", 16))).map_err(err)?;
        return Ok(());
    }
    if speedup {
        // keep the 1× line in view
        y0 = y0.min(1.0);
        y1 = y1.max(1.0);
    }
    // label the axis at the sizes measured (log ranges narrower than a decade get no ticks)
    let mut ticks: Vec<f64> = data.iter().flat_map(|(_, p)| p.iter().map(|q| q.0)).collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let (x0, x1) = (x0 / 1.2, x1 * 1.2);
    let (y0, y1) = (y0 / 1.5, y1 * 1.5);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d((x0..x1).log_scale().with_key_points(ticks), (y0..y1).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(BLACK.mix(0.04))
        .x_desc(xdesc)
        .y_desc(if speedup { "× vs cpu" } else { "ms" })
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.2}")
            }
        })
        .draw()
        .map_err(err)?;
    if speedup {
        chart.draw_series(LineSeries::new([(x0, 1.0), (x1, 1.0)], BLACK.mix(0.4).stroke_width(1))).map_err(err)?;
    }
    for (name, points) in data {
        let color = Palette99::pick(names.iter().position(|n| n == name).unwrap_or(0)).to_rgba();
        let mut points = points.clone();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
    }
    let corner = if speedup { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperLeft };
    chart
        .configure_series_labels()
        .position(corner)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .draw()
        .map_err(err)?;
    Ok(())
}
