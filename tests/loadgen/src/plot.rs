//! SVG plots of a run: the latency percentile curve and throughput over time.
//! The SVG backend writes text as SVG text elements, so no font files or
//! system libraries are needed.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::metrics::Second;

/// Percentiles plotted, as "nines": x = −log10(1 − q).
const QUANTILES: &[f64] = &[
    0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 0.99999,
];

/// `latency.svg`: latency (ms) at each percentile, on a "nines" axis.
pub fn latency_curve(histogram: &Histogram<u64>, title: &str, path: &Path) -> anyhow::Result<()> {
    let points: Vec<(f64, f64)> = QUANTILES
        .iter()
        .map(|&q| (nines(q), histogram.value_at_quantile(q) as f64 / 1000.0))
        .collect();
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..5.0, 0.0..max_y)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .x_labels(6)
        .x_label_formatter(&|x| format!("{}%", percent_label(*x)))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(points, &BLUE))
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// `throughput.svg`: messages sent and delivered in each second.
pub fn throughput(timeline: &[Second], title: &str, path: &Path) -> anyhow::Result<()> {
    let max_y = timeline
        .iter()
        .map(|s| s.sent.max(s.delivered))
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    let max_x = timeline.len().max(1) as f64;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("second")
        .y_desc("messages per second")
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(
            timeline.iter().map(|s| (s.t as f64, s.delivered as f64)),
            &BLUE,
        ))
        .map_err(plot_error)?
        .label("delivered")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            timeline.iter().map(|s| (s.t as f64, s.sent as f64)),
            &RED,
        ))
        .map_err(plot_error)?
        .label("sent")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-5).log10()
}

fn percent_label(x: f64) -> String {
    let q = 1.0 - 10f64.powf(-x);
    let percent = q * 100.0;
    if (percent - percent.round()).abs() < 1e-9 {
        format!("{percent:.0}")
    } else {
        format!("{percent:.3}").trim_end_matches('0').to_owned()
    }
}

fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a plot: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_written_without_fonts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
        for v in 1..5000u64 {
            h.record(v * 10).expect("in range");
        }
        latency_curve(&h, "latency", &dir.path().join("latency.svg")).expect("latency plot");
        let timeline: Vec<Second> = (0..10)
            .map(|t| Second {
                t,
                sent: 100,
                delivered: 900,
            })
            .collect();
        throughput(&timeline, "throughput", &dir.path().join("throughput.svg"))
            .expect("throughput plot");
        let svg = std::fs::read_to_string(dir.path().join("latency.svg")).expect("svg");
        assert!(svg.starts_with("<svg"), "{svg:.100}");
        assert_eq!(percent_label(nines(0.999)), "99.9");
        assert_eq!(percent_label(nines(0.5)), "50");
    }
}
