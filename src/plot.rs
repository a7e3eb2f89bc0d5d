//! Plots as SVG (and PNG): precision-coverage curves and a confusion matrix
//! for eval, training curves for the training loop. Below every layer: it
//! imports only [`crate::metrics`].
//!
//! Written directly as SVG text: the plotting crates render text through
//! system fonts (font-kit, fontconfig) that a fresh machine may not have,
//! while an SVG's text is drawn by whatever views it.

use std::fmt::Write;

use crate::metrics::SweepPoint;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Precision (y) against coverage (x) for each system's sweep, with the
/// baseline annotator's precision as a dashed line. The y axis starts at the
/// lowest value shown, so differences of a point or two stay visible.
pub fn sweep_svg(
    title: &str,
    curves: &[(&str, &[SweepPoint])],
    baseline: Option<(&str, f64)>,
) -> String {
    let ys = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.precision))
        .chain(baseline.map(|b| b.1));
    let low = ys.filter(|v| v.is_finite()).fold(1.0f64, f64::min);
    let y_min = ((low - 0.02).max(0.0) * 20.0).floor() / 20.0;
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let x = |coverage: f64| LEFT + coverage * plot_w;
    let y = |precision: f64| TOP + (1.0 - (precision - y_min) / (1.0 - y_min).max(1e-9)) * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>
"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Grid and axes.
    for i in 0..=10 {
        let c = i as f64 / 10.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="#e5e5e5"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3:.0}%</text>"##,
            x(c),
            TOP + plot_h,
            TOP + plot_h + 18.0,
            c * 100.0
        );
    }
    let steps = ((1.0 - y_min) / 0.05).round().max(1.0) as usize;
    for i in 0..=steps {
        let p = y_min + (1.0 - y_min) * i as f64 / steps as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4:.2}</text>"##,
            y(p),
            LEFT + plot_w,
            LEFT - 8.0,
            y(p) + 4.0,
            p
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">coverage (share of items labelled at or above the threshold)</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">precision (accuracy on labelled items)</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    let mut legend_y = TOP + 16.0;
    if let Some((name, precision)) = baseline {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#555" stroke-width="2" stroke-dasharray="6 4"/>"##,
            y(precision),
            LEFT + plot_w
        );
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="#555" stroke-width="2" stroke-dasharray="6 4"/><text x="{3:.1}" y="{4:.1}">{5} ({6:.3})</text>"##,
            LEFT + 12.0,
            legend_y,
            LEFT + 40.0,
            LEFT + 46.0,
            legend_y + 4.0,
            escape(name),
            precision
        );
        legend_y += 18.0;
    }
    for (i, (name, points)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|p| p.precision.is_finite() && p.covered > 0)
            .map(|p| format!("{:.1},{:.1}", x(p.coverage), y(p.precision)))
            .collect();
        if !path.is_empty() {
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2.5"/>"#,
                path.join(" ")
            );
        }
        let _ = writeln!(
            svg,
            r#"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="{color}" stroke-width="3"/><text x="{3:.1}" y="{4:.1}">{5}</text>"#,
            LEFT + 12.0,
            legend_y,
            LEFT + 40.0,
            LEFT + 46.0,
            legend_y + 4.0,
            escape(name)
        );
        legend_y += 18.0;
    }
    svg += "</svg>\n";
    svg
}

/// A confusion matrix as a heat map: rows gold, columns predicted, each row
/// shaded by its own share so rare classes stay readable.
pub fn confusion_svg(title: &str, labels: &[String], matrix: &[Vec<u64>]) -> String {
    let columns: Vec<String> = labels
        .iter()
        .cloned()
        .chain(["withheld".to_string()])
        .collect();
    let cell = 62.0;
    let (left, top) = (110.0, 90.0);
    let width = left + cell * columns.len() as f64 + 20.0;
    let height = top + cell * labels.len() as f64 + 50.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
<text x="{}" y="46" text-anchor="middle">predicted</text>
<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">gold</text>
"#,
        width / 2.0,
        escape(title),
        left + cell * columns.len() as f64 / 2.0,
        top + cell * labels.len() as f64 / 2.0,
        top + cell * labels.len() as f64 / 2.0
    );
    for (j, label) in columns.iter().enumerate() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            left + cell * (j as f64 + 0.5),
            top - 10.0,
            escape(label)
        );
    }
    for (i, (label, row)) in labels.iter().zip(matrix).enumerate() {
        let row_total: u64 = row.iter().sum::<u64>().max(1);
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            top + cell * (i as f64 + 0.5) + 4.0,
            escape(label)
        );
        for (j, &count) in row.iter().enumerate() {
            let share = count as f64 / row_total as f64;
            let shade = (255.0 - share * 200.0) as u8;
            let ink = if share > 0.55 { "white" } else { "black" };
            let (cx, cy) = (left + cell * j as f64, top + cell * i as f64);
            let _ = writeln!(
                svg,
                r##"<rect x="{cx:.1}" y="{cy:.1}" width="{cell}" height="{cell}" fill="rgb({shade},{shade},255)" stroke="#fff"/><text x="{:.1}" y="{:.1}" text-anchor="middle" fill="{ink}">{count}</text>"##,
                cx + cell / 2.0,
                cy + cell / 2.0 + 4.0
            );
        }
    }
    svg += "</svg>\n";
    svg
}

/// Renders an SVG to PNG at twice its size, with DejaVu Sans compiled in
/// (a fresh machine may have no fonts at all).
pub fn png(svg: &str) -> anyhow::Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut options = usvg::Options::default();
    let fonts = options.fontdb_mut();
    fonts.load_font_data(dejavu::sans::regular().to_vec());
    fonts.load_font_data(dejavu::sans::bold().to_vec());
    fonts.set_sans_serif_family("DejaVu Sans");
    options.font_family = "DejaVu Sans".into();
    let tree = usvg::Tree::from_str(svg, &options)?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width() * 2, size.height() * 2)
        .ok_or_else(|| anyhow::anyhow!("plot of zero size"))?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(2.0, 2.0),
        &mut pixmap.as_mut(),
    );
    Ok(pixmap.encode_png()?)
}

/// A training curve: loss (left axis) and a score in [0, 1] such as ROC-AUC
/// (right axis) against steps.
pub fn curve_svg(title: &str, points: Vec<(f64, f64, Option<f64>)>) -> String {
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT - 40.0, HEIGHT - TOP - BOTTOM);
    let max_step = points.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let max_loss = points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold(1e-9f64, f64::max)
        * 1.05;
    let x = |step: f64| LEFT + step / max_step * plot_w;
    let y_loss = |loss: f64| TOP + (1.0 - loss / max_loss) * plot_h;
    let y_score = |score: f64| TOP + (1.0 - score) * plot_h;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Helvetica, Arial, sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="28" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
"#,
        WIDTH / 2.0,
        escape(title)
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{2:.1}" y="{3:.1}" text-anchor="end" fill="{4}">{5:.3}</text><text x="{6:.1}" y="{3:.1}" fill="{7}">{8:.1}</text>"##,
            TOP + (1.0 - f) * plot_h,
            LEFT + plot_w,
            LEFT - 8.0,
            TOP + (1.0 - f) * plot_h + 4.0,
            COLORS[0],
            f * max_loss,
            LEFT + plot_w + 6.0,
            COLORS[1],
            f
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{:.0}</text>"#,
            x(f * max_step),
            TOP + plot_h + 18.0,
            f * max_step
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">step</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    let loss: Vec<String> = points
        .iter()
        .filter(|p| p.1.is_finite())
        .map(|p| format!("{:.1},{:.1}", x(p.0), y_loss(p.1)))
        .collect();
    let score: Vec<String> = points
        .iter()
        .filter_map(|p| {
            p.2.filter(|v| v.is_finite())
                .map(|s| format!("{:.1},{:.1}", x(p.0), y_score(s)))
        })
        .collect();
    let _ = writeln!(
        svg,
        r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"/>"#,
        loss.join(" "),
        COLORS[0]
    );
    if !score.is_empty() {
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"/>"#,
            score.join(" "),
            COLORS[1]
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" fill="{}">training loss (left)</text><text x="{:.1}" y="{:.1}" fill="{}">held-out ROC-AUC (right)</text>"#,
        LEFT + 12.0,
        TOP + 18.0,
        COLORS[0],
        LEFT + 12.0,
        TOP + 36.0,
        COLORS[1]
    );
    svg += "</svg>\n";
    svg
}

/// Shares of each category in two or more series (today against the
/// trailing days) as horizontal bars, one row per category, so long intent
/// names stay readable. Shares are in [0, 1]; the axis ends at the largest.
pub fn share_bars_svg(title: &str, categories: &[String], series: &[(&str, Vec<f64>)]) -> String {
    let (left, right, top) = (170.0, 70.0, 70.0);
    let bar = 12.0;
    let row = bar * series.len().max(1) as f64 + 8.0;
    let height = top + row * categories.len().max(1) as f64 + 50.0;
    let plot_w = WIDTH - left - right;
    let largest = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.01f64, f64::max);
    // Round ticks: every 5, 10 or 25 points, up to the largest share.
    let step = match largest {
        s if s <= 0.2 => 0.05,
        s if s <= 0.5 => 0.1,
        _ => 0.25,
    };
    let ticks = (largest / step - 1e-9).ceil().max(1.0) as usize;
    let max_share = step * ticks as f64;
    let x = |share: f64| left + share / max_share * plot_w;
    let mut svg = svg_head(WIDTH, height, title);
    for i in 0..=ticks {
        let share = step * i as f64;
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1:.1}" stroke="#e5e5e5"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3:.0}%</text>"##,
            x(share),
            height - 50.0,
            height - 32.0,
            share * 100.0
        );
    }
    for (s, (name, _)) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let lx = left + 160.0 * s as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{lx:.1}" y="42" width="14" height="10" fill="{color}"/><text x="{:.1}" y="51">{}</text>"#,
            lx + 20.0,
            escape(name)
        );
    }
    for (c, category) in categories.iter().enumerate() {
        let y0 = top + row * c as f64 + 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            y0 + row / 2.0,
            escape(category)
        );
        for (s, (_, shares)) in series.iter().enumerate() {
            let share = shares
                .get(c)
                .copied()
                .filter(|v| v.is_finite())
                .unwrap_or(0.0);
            let y = y0 + bar * s as f64;
            let _ = writeln!(
                svg,
                r#"<rect x="{left}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10">{:.1}%</text>"#,
                x(share) - left,
                bar - 2.0,
                COLORS[s % COLORS.len()],
                x(share) + 4.0,
                y + bar - 3.0,
                share * 100.0
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">share of the day's labels</text>"#,
        left + plot_w / 2.0,
        height - 10.0
    );
    svg += "</svg>\n";
    svg
}

/// A histogram of confidences in [0, 1] (equal-width bins), with the
/// configured threshold as a dashed line: what lies left of it is withheld.
pub fn histogram_svg(title: &str, bins: &[u64], threshold: Option<(f64, &str)>) -> String {
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let most = bins.iter().copied().max().unwrap_or(0).max(1) as f64;
    let x = |p: f64| LEFT + p * plot_w;
    let y = |count: f64| TOP + (1.0 - count / most) * plot_h;
    let mut svg = svg_head(WIDTH, HEIGHT, title);
    for i in 0..=10 {
        let p = i as f64 / 10.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{p:.1}</text>"#,
            x(p),
            TOP + plot_h + 18.0
        );
    }
    for i in 0..=4 {
        let count = most * i as f64 / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4:.0}</text>"##,
            y(count),
            LEFT + plot_w,
            LEFT - 8.0,
            y(count) + 4.0,
            count
        );
    }
    let width = plot_w / bins.len().max(1) as f64;
    for (i, &count) in bins.iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" stroke="white"/>"##,
            LEFT + width * i as f64,
            y(count as f64),
            width,
            TOP + plot_h - y(count as f64),
            COLORS[0]
        );
    }
    if let Some((threshold, note)) = threshold {
        let _ = writeln!(
            svg,
            r##"<line x1="{0:.1}" y1="{TOP}" x2="{0:.1}" y2="{1:.1}" stroke="{2}" stroke-width="2" stroke-dasharray="6 4"/><text x="{3:.1}" y="{4:.1}" fill="{2}">{5}</text>"##,
            x(threshold),
            TOP + plot_h,
            COLORS[1],
            x(threshold) + 6.0,
            TOP + 16.0,
            escape(note)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle">confidence of the emitted label</text><text x="18" y="{:.1}" text-anchor="middle" transform="rotate(-90 18 {:.1})">labels</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
    );
    svg += "</svg>\n";
    svg
}

/// Metrics in [0, 1] over runs: one line per series, the x axis the runs in
/// order, labelled with their dates; a missing value breaks no line, it is
/// just not drawn.
pub fn timeline_svg(title: &str, runs: &[String], series: &[(&str, Vec<Option<f64>>)]) -> String {
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT - 130.0, HEIGHT - TOP - BOTTOM);
    let x = |i: usize| {
        if runs.len() <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (runs.len() - 1) as f64
        }
    };
    let y = |v: f64| TOP + (1.0 - v.clamp(0.0, 1.0)) * plot_h;
    let mut svg = svg_head(WIDTH, HEIGHT, title);
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{v:.1}</text>"##,
            y(v),
            LEFT + plot_w,
            LEFT - 8.0,
            y(v) + 4.0
        );
    }
    // At most about eight date labels, so they do not overlap.
    let every = runs.len().div_ceil(8).max(1);
    for (i, run) in runs.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"#,
            x(i),
            TOP + plot_h + 18.0,
            escape(run)
        );
    }
    for (s, (name, values)) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let points: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (x(i), y(v))))
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        if points.len() > 1 {
            let _ = writeln!(
                svg,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2.5"/>"#,
                path.join(" ")
            );
        }
        for (px, py) in &points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="4" fill="{color}"/>"#
            );
        }
        let ly = TOP + 16.0 + 18.0 * s as f64;
        let lx = LEFT + plot_w + 14.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            lx + 20.0,
            lx + 25.0,
            ly + 4.0,
            escape(name)
        );
    }
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle">eval run (date, UTC)</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0
    );
    svg += "</svg>\n";
    svg
}

/// The opening of a plot: the root element, a white background, the title.
fn svg_head(width: f64, height: f64, title: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="Helvetica, Arial, sans-serif" font-size="13">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>
"#,
        width / 2.0,
        escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_plots_render_and_name_what_they_show() {
        let bars = share_bars_svg(
            "intent <drift>",
            &["PlayMusic".into(), "GetWeather".into()],
            &[
                ("today", vec![0.75, 0.25]),
                ("trailing 7 days", vec![0.5, 0.5]),
            ],
        );
        assert!(bars.contains("intent &lt;drift&gt;") && bars.contains("75.0%"));
        let histogram = histogram_svg("intent confidence", &[0, 1, 5, 2], Some((0.5, "min 0.50")));
        assert!(histogram.contains("stroke-dasharray") && histogram.contains("min 0.50"));
        let timeline = timeline_svg(
            "eval",
            &["2026-12-01".into(), "2026-12-02".into()],
            &[("intent", vec![Some(0.8), None])],
        );
        assert_eq!(
            timeline.matches("<circle").count(),
            1,
            "a missing value is not drawn"
        );
        for svg in [bars, histogram, timeline] {
            let png = png(&svg).unwrap();
            assert_eq!(&png[1..4], b"PNG");
            assert!(png.len() > 2000, "an empty picture");
        }
    }
}
