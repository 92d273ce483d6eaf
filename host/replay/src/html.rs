//! `--html report.html`: one self-contained page with the table and three plots (queued builds,
//! nodes, cost), one line per policy, drawn by plotters as inline SVG.

use plotters::prelude::*;

use super::run::{Outcome, Sample, rfc3339};

/// The whole page.
pub fn page(outcomes: &[Outcome], table: &str) -> Result<String, String> {
    let names: Vec<&str> = outcomes.iter().map(|o| o.report.policy.as_str()).collect();
    let plots = [
        ("Queued builds", plot("Queued builds", outcomes, |s| f64::from(s.queued))?),
        ("Nodes (all states)", plot("Nodes", outcomes, |s| f64::from(s.in_flight + s.busy + s.idle + s.other))?),
        ("Cost so far", plot("Cost", outcomes, |s| s.cost)?),
    ];
    let mut html = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Policy replay</title>\n");
    html.push_str("<style>body{font-family:sans-serif;margin:2em;max-width:1000px}pre{background:#f6f6f6;padding:1em;overflow-x:auto}figure{margin:1.5em 0}</style></head><body>\n");
    html.push_str(&format!("<h1>Policy replay: {}</h1>\n", escape(&names.join(" vs "))));
    if let Some(o) = outcomes.first() {
        let (start, end) = window(&o.series);
        html.push_str(&format!("<p>Simulated {} to {}.</p>\n", rfc3339(start), rfc3339(end)));
    }
    html.push_str(&format!("<pre id=\"table\">{}</pre>\n", escape(table)));
    for (caption, svg) in plots {
        html.push_str(&format!("<figure class=\"plot\"><figcaption>{}</figcaption>\n{svg}\n</figure>\n", escape(caption)));
    }
    html.push_str("</body></html>\n");
    Ok(html)
}

fn window(series: &[Sample]) -> (u64, u64) {
    (series.first().map_or(0, |s| s.at_ms), series.last().map_or(0, |s| s.at_ms))
}

/// One plot: `value` of every policy's series over time (hours since the start).
fn plot(title: &str, outcomes: &[Outcome], value: impl Fn(&Sample) -> f64) -> Result<String, String> {
    let start = outcomes.iter().filter_map(|o| o.series.first()).map(|s| s.at_ms).min().unwrap_or(0);
    let hours = |s: &Sample| (s.at_ms - start) as f64 / 3_600_000.0;
    let x_max = outcomes.iter().flat_map(|o| o.series.iter().map(hours)).fold(1.0_f64, f64::max);
    let y_max = outcomes.iter().flat_map(|o| o.series.iter().map(&value)).fold(1.0_f64, f64::max) * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 300)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| format!("drawing the {title} plot: {e}");
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max)
            .map_err(e)?;
        chart.configure_mesh().x_desc("hours").y_desc(title).draw().map_err(e)?;
        for (i, o) in outcomes.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(o.series.iter().map(|s| (hours(s), value(s))), color.stroke_width(2)))
                .map_err(e)?
                .label(o.report.policy.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
