//! The model folder's pictures: training curves and the validation confusion matrix (SVG).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use mvsa_model::metrics::Metrics;

use crate::training::EpochLog;

fn fail(path: &Path) -> impl Fn(Box<dyn std::error::Error + '_>) -> anyhow::Error + '_ {
    move |e| anyhow!("cannot draw {}: {e}", path.display())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;
/// A named, coloured line of (epoch, value) points.
type Line<'a> = (&'a str, Vec<(f64, f64)>, RGBColor);
type DrawResult = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// Loss (train and validation) and validation accuracy / macro-F1 per epoch, side by side,
/// with the kept epoch marked; `caption` heads the scores.
pub fn training_curves(
    history: &[EpochLog],
    best_epoch: usize,
    caption: &str,
    path: &Path,
) -> Result<()> {
    let root = SVGBackend::new(path, (960, 380)).into_drawing_area();
    let series = |f: fn(&EpochLog) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|h| (h.epoch as f64, f(h))).collect()
    };
    let max_loss = history
        .iter()
        .flat_map(|h| [h.train_loss, h.val_loss])
        .fold(0.1f64, f64::max)
        * 1.1;
    let draw = || -> DrawResult {
        root.fill(&WHITE)?;
        let (left, right) = root.split_horizontally(480);
        let epochs = history.len().max(2) as f64;
        let losses = [
            ("train", series(|h| h.train_loss), BLUE),
            ("validation", series(|h| h.val_loss), RED),
        ];
        panel(&left, "Loss", epochs, max_loss, &losses, None)?;
        let scores = [
            ("accuracy", series(|h| h.val_accuracy), GREEN),
            ("macro-F1", series(|h| h.val_macro_f1), MAGENTA),
        ];
        panel(&right, caption, epochs, 1.0, &scores, Some(best_epoch))?;
        root.present()
    };
    draw().map_err(|e| fail(path)(Box::new(e)))
}

/// One chart of lines over epochs `1..epochs`, `0..top` high, with a legend; `kept` marks an
/// epoch with a vertical line.
fn panel(
    area: &Area,
    caption: &str,
    epochs: f64,
    top: f64,
    lines: &[Line],
    kept: Option<usize>,
) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(1.0..epochs, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    for (name, data, color) in lines {
        let color = *color;
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    if let Some(epoch) = kept {
        let mark = vec![(epoch as f64, 0.0), (epoch as f64, top)];
        chart.draw_series(std::iter::once(PathElement::new(mark, BLACK.mix(0.4))))?;
    }
    let position = match kept {
        Some(_) => SeriesLabelPosition::LowerRight,
        None => SeriesLabelPosition::UpperRight,
    };
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}

/// Confusion matrix headed by `caption`: rows are true labels, columns predictions; cells shaded by row share.
pub fn confusion_matrix(metrics: &Metrics, caption: &str, path: &Path) -> Result<()> {
    let k = metrics.confusion.len();
    let cell = 110i32;
    let (x0, y0) = (130i32, 60i32);
    let size = (x0 + cell * k as i32 + 20, y0 + cell * k as i32 + 50);
    let root = SVGBackend::new(path, (size.0 as u32, size.1 as u32)).into_drawing_area();
    let draw = |r: Result<(), DrawingAreaErrorKind<_>>| r.map_err(|e| fail(path)(Box::new(e)));
    draw(root.fill(&WHITE))?;
    let title = format!(
        "{caption}: accuracy {:.3}, macro-F1 {:.3}",
        metrics.accuracy, metrics.macro_f1
    );
    let font = ("sans-serif", 16).into_font();
    draw(root.draw(&Text::new(title, (10, 12), font.clone())))?;
    draw(root.draw(&Text::new("predicted →", (x0, 38), font.clone())))?;
    draw(root.draw(&Text::new("true ↓", (10, 38), font.clone())))?;
    let labels: Vec<&str> = metrics.per_class.iter().map(|c| c.label.as_str()).collect();
    for (i, row) in metrics.confusion.iter().enumerate() {
        let total: usize = row.iter().sum::<usize>().max(1);
        let y = y0 + cell * i as i32;
        draw(root.draw(&Text::new(
            labels[i].to_string(),
            (10, y + cell / 2 - 8),
            font.clone(),
        )))?;
        for (j, &count) in row.iter().enumerate() {
            let x = x0 + cell * j as i32;
            let share = count as f64 / total as f64;
            let shade = RGBColor(
                (255.0 - 200.0 * share) as u8,
                (255.0 - 140.0 * share) as u8,
                255,
            );
            draw(root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                shade.filled(),
            )))?;
            draw(root.draw(&Rectangle::new([(x, y), (x + cell, y + cell)], BLACK)))?;
            let text = format!("{count} ({:.0}%)", share * 100.0);
            draw(root.draw(&Text::new(text, (x + 12, y + cell / 2 - 8), font.clone())))?;
        }
        if i == k - 1 {
            for (j, label) in labels.iter().enumerate() {
                let x = x0 + cell * j as i32 + 12;
                draw(root.draw(&Text::new(
                    label.to_string(),
                    (x, y + cell + 10),
                    font.clone(),
                )))?;
            }
        }
    }
    draw(root.present())?;
    Ok(())
}
