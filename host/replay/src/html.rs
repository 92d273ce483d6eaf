//! `--html report.html`: one self-contained page with the table and three plots (queued builds,
//! nodes, cost), one line per policy, drawn by plotters as inline SVG.

use maud::{DOCTYPE, PreEscaped, html};
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
    let period = outcomes.first().map(|o| window(&o.series));
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Policy replay" }
                style { "body{font-family:sans-serif;margin:2em;max-width:1000px}pre{background:#f6f6f6;padding:1em;overflow-x:auto}figure{margin:1.5em 0}" }
            }
            body {
                h1 { "Policy replay: " (names.join(" vs ")) }
                @if let Some((start, end)) = period {
                    p { "Simulated " (rfc3339(start)) " to " (rfc3339(end)) "." }
                }
                pre id="table" { (table) }
                @for (caption, svg) in &plots {
                    figure class="plot" {
                        figcaption { (caption) }
                        // plotters' own SVG markup; every text in it is escaped by plotters.
                        (PreEscaped(svg))
                    }
                }
            }
        }
    };
    Ok(page.into_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::PolicyReport;

    #[test]
    fn names_and_the_table_are_escaped_and_the_plots_kept_whole() {
        let series = (0..3).map(|i| Sample { at_ms: i * 3_600_000, queued: i as u32, ..Sample::default() }).collect();
        let outcome = Outcome { report: PolicyReport { policy: "<b>x</b>".into(), ..PolicyReport::default() }, series, computed_cycles: 3 };
        let page = page(&[outcome], "a < b & c").unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
        assert!(!page.contains("<b>x</b>") && page.contains("&lt;b&gt;x&lt;/b&gt;"), "{page}");
        assert!(page.contains("<pre id=\"table\">a &lt; b &amp; c</pre>"), "{page}");
        assert_eq!(page.matches("<svg").count(), 3);
        assert_eq!(page.matches("</svg>").count(), 3);
    }
}
