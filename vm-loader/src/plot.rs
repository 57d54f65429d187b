//! A small hand-written SVG chart: median times against heap size, both on
//! logarithmic axes, one polyline per series.

use std::fmt::Write;

/// One series: a name, a colour, dashed or not, and `(heap bytes, ms)` points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub colour: &'static str,
    pub dashed: bool,
    pub points: Vec<(u64, f64)>,
}

const W: f64 = 820.0;
const H: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// Heap sizes as people write them: `16 MiB`, `1 GiB`.
fn size_label(bytes: f64) -> String {
    let mib = bytes / (1u64 << 20) as f64;
    if mib >= 1024.0 {
        format!("{} GiB", trim(mib / 1024.0))
    } else if mib >= 1.0 {
        format!("{} MiB", trim(mib))
    } else {
        format!("{} KiB", trim(bytes / 1024.0))
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

fn ms_label(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{} s", trim(ms / 1000.0))
    } else if ms >= 1.0 {
        format!("{} ms", trim(ms))
    } else {
        format!("{} µs", trim(ms * 1000.0))
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart as an SVG document.
pub fn svg(title: &str, series: &[Series]) -> String {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        let (x, y) = (x.max(1) as f64, y.max(1e-3));
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (
            1.0 * (1u64 << 20) as f64,
            2.0 * (1u64 << 20) as f64,
            1.0,
            10.0,
        );
    }
    // Half a power of two of room on each side, a little more in time.
    let (lx0, lx1) = ((x0.log2() - 0.5), (x1.log2() + 0.5));
    let (ly0, ly1) = ((y0 / 1.6).log10(), (y1 * 1.6).log10());
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + (x.log2() - lx0) / (lx1 - lx0) * pw;
    let py = |y: f64| TOP + ph - (y.log10() - ly0) / (ly1 - ly0) * ph;

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" font-size="15" text-anchor="middle">{}</text>"#,
        LEFT + pw / 2.0,
        escape(title)
    );
    // Grid and ticks: every power of two of heap size, 1-2-5 steps of time.
    // A decade exponent of a plotted time: a small whole number.
    #[allow(clippy::cast_possible_truncation)]
    let mut k = lx0.ceil() as i32;
    while (k as f64) <= lx1 {
        let x = px(2f64.powi(k));
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e4e4e4"/>"##,
            TOP + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            TOP + ph + 18.0,
            size_label(2f64.powi(k))
        );
        k += 1;
    }
    // A decade exponent of a plotted time: a small whole number.
    #[allow(clippy::cast_possible_truncation)]
    let mut dec = ly0.floor() as i32;
    while (dec as f64) <= ly1 {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(dec);
            let l = v.log10();
            if l < ly0 || l > ly1 {
                continue;
            }
            let y = py(v);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e4e4e4"/>"##,
                LEFT + pw
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                ms_label(v)
            );
        }
        dec += 1;
    }
    // Axes and their titles.
    let _ = writeln!(
        s,
        r#"<path d="M{LEFT},{TOP} V{:.1} H{:.1}" fill="none" stroke="black"/>"#,
        TOP + ph,
        LEFT + pw
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">heap size (log scale)</text>"#,
        LEFT + pw / 2.0,
        H - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(20,{:.1}) rotate(-90)" text-anchor="middle">median time (log scale)</text>"#,
        TOP + ph / 2.0
    );
    // The series, then the legend.
    for (i, se) in series.iter().enumerate() {
        let dash = if se.dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let mut pts: Vec<_> = se.points.clone();
        pts.sort_by_key(|p| p.0);
        let line: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x.max(1) as f64), py(y.max(1e-3))))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            line.join(" "),
            se.colour
        );
        for p in &line {
            let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                s,
                r#"<circle cx="{cx}" cy="{cy}" r="3" fill="{}"/>"#,
                se.colour
            );
        }
        let ly = TOP + 10.0 + 22.0 * i as f64;
        let lx = LEFT + pw + 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/>"#,
            lx + 28.0,
            se.colour
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 36.0,
            ly + 4.0,
            escape(&se.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_has_a_line_per_series_and_readable_ticks() {
        let mib = 1u64 << 20;
        let series = vec![
            Series {
                name: "load".into(),
                colour: "#1f77b4",
                dashed: false,
                points: vec![(16 * mib, 3.0), (1024 * mib, 190.0)],
            },
            Series {
                name: "std::fs::read <baseline>".into(),
                colour: "#1f77b4",
                dashed: true,
                points: vec![(16 * mib, 8.0), (1024 * mib, 600.0)],
            },
        ];
        let s = svg("Load & snapshot", &series);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("16 MiB") && s.contains("1 GiB"));
        assert!(s.contains("100 ms"));
        assert!(s.contains("Load &amp; snapshot") && s.contains("&lt;baseline&gt;"));
        assert!(!s.contains("NaN") && !s.contains("inf"));
        // No points at all still gives a valid, empty chart.
        let empty = svg("nothing", &[]);
        assert!(!empty.contains("NaN"));
    }

    #[test]
    fn labels_read_as_people_write_them() {
        assert_eq!(size_label((64u64 << 20) as f64), "64 MiB");
        assert_eq!(size_label((1u64 << 30) as f64), "1 GiB");
        assert_eq!(ms_label(1500.0), "1.5 s");
        assert_eq!(ms_label(0.5), "500 µs");
    }
}
