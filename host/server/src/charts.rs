//! Small line charts drawn as SVG on the server: the console needs no JavaScript.

use maud::{Markup, html};

/// The time the charts span, ms (the board keeps as much).
pub const WINDOW_MS: u64 = ecsp_engine::console::HISTORY_MS;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 160.0;
const LEFT: f64 = 36.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 8.0;
const BOTTOM: f64 = 22.0;

/// One line: a name for the legend, its colour, and (ms since the epoch, value) points.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// A CSS colour.
    pub color: &'static str,
    /// Points, oldest first.
    pub points: Vec<(u64, u32)>,
}

/// The smallest of 1, 2, 5 x 10^k at or above `v` (at least 1): a y axis that reads well.
fn nice_ceiling(v: u32) -> u32 {
    let mut step = 1u32;
    loop {
        for m in [1, 2, 5] {
            if let Some(c) = step.checked_mul(m)
                && c >= v
            {
                return c;
            }
        }
        match step.checked_mul(10) {
            Some(s) => step = s,
            None => return u32::MAX,
        }
    }
}

/// A line chart of `series` over the hour before `now_ms`, titled `title`, with a legend that
/// gives each line's latest value.
pub fn line_chart(title: &str, now_ms: u64, series: &[Series]) -> Markup {
    let top = nice_ceiling(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).max().unwrap_or(0));
    let start = now_ms.saturating_sub(WINDOW_MS);
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |t: u64| LEFT + (t.clamp(start, now_ms) - start) as f64 / WINDOW_MS as f64 * plot_w;
    let y = |v: u32| TOP + plot_h - f64::from(v) / f64::from(top) * plot_h;
    let path = |s: &Series| s.points.iter().map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v))).collect::<Vec<_>>().join(" ");
    html! {
        figure.chart {
            figcaption { (title) }
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) width=(WIDTH) height=(HEIGHT) role="img" aria-label=(title) {
                title { (title) " over the last hour" }
                line.axis x1=(LEFT) y1=(TOP + plot_h) x2=(LEFT + plot_w) y2=(TOP + plot_h) {}
                line.grid x1=(LEFT) y1=(TOP) x2=(LEFT + plot_w) y2=(TOP) {}
                line.grid x1=(LEFT) y1=(TOP + plot_h / 2.0) x2=(LEFT + plot_w) y2=(TOP + plot_h / 2.0) {}
                text x=(LEFT - 4.0) y=(TOP + 4.0) text-anchor="end" { (top) }
                text x=(LEFT - 4.0) y=(TOP + plot_h / 2.0 + 4.0) text-anchor="end" { (f64::from(top) / 2.0) }
                text x=(LEFT - 4.0) y=(TOP + plot_h + 4.0) text-anchor="end" { "0" }
                text x=(LEFT) y=(HEIGHT - 6.0) { "-60 min" }
                text x=(LEFT + plot_w / 2.0) y=(HEIGHT - 6.0) text-anchor="middle" { "-30 min" }
                text x=(LEFT + plot_w) y=(HEIGHT - 6.0) text-anchor="end" { "now" }
                @for s in series {
                    @if s.points.len() == 1 {
                        circle cx=(format!("{:.1}", x(s.points[0].0))) cy=(format!("{:.1}", y(s.points[0].1))) r="2.5" fill=(s.color) {}
                    } @else {
                        polyline points=(path(s)) fill="none" stroke=(s.color) stroke-width="1.5" {}
                    }
                }
            }
            ul.legend {
                @for s in series {
                    li {
                        span.swatch style=(format!("background:{}", s.color)) {}
                        (s.name) ": " (s.points.last().map_or(0, |p| p.1))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_y_axis_ends_on_a_round_number() {
        assert_eq!([0, 1, 2, 3, 6, 11, 20, 21, 499, 501].map(nice_ceiling), [1, 1, 2, 5, 10, 20, 20, 50, 500, 1000]);
        assert_eq!(nice_ceiling(u32::MAX), u32::MAX);
    }

    #[test]
    fn points_span_the_hour_left_to_right_and_bottom_to_top() {
        let now = 10 * WINDOW_MS;
        let s = Series { name: "queued <builds>".into(), color: "#06c", points: vec![(now - WINDOW_MS, 0), (now - WINDOW_MS / 2, 5), (now, 10)] };
        let svg = line_chart("Queued builds", now, &[s]).into_string();
        // x from 36 to 632, y from 138 (0) to 8 (10).
        assert!(svg.contains(r#"points="36.0,138.0 334.0,73.0 632.0,8.0""#), "{svg}");
        assert!(svg.contains("queued &lt;builds&gt;: 10"), "legend escaped, with the latest value: {svg}");
        assert!(svg.contains(">10</text>"), "{svg}");
    }
}
