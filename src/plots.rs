//! The model folder's pictures: training curves and the validation confusion matrix (SVG).

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use crate::metrics::Metrics;
use crate::training::EpochLog;

fn fail(path: &Path) -> impl Fn(Box<dyn std::error::Error + '_>) -> anyhow::Error + '_ {
    move |e| anyhow!("cannot draw {}: {e}", path.display())
}

/// Loss (train and validation) and validation accuracy / macro-F1 per epoch, side by side,
/// with the kept epoch marked.
pub fn training_curves(history: &[EpochLog], best_epoch: usize, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (960, 380)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(path)(Box::new(e)))?;
    let (left, right) = root.split_horizontally(480);
    let epochs = history.len().max(2) as f64;
    let x_range = 1.0..epochs;

    let losses = history.iter().flat_map(|h| [h.train_loss, h.val_loss]);
    let max_loss = losses.fold(0.1f64, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&left)
        .caption("Loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(x_range.clone(), 0.0..max_loss)
        .map_err(|e| fail(path)(Box::new(e)))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| fail(path)(Box::new(e)))?;
    let series = |f: fn(&EpochLog) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|h| (h.epoch as f64, f(h))).collect()
    };
    for (name, data, color) in [
        ("train", series(|h| h.train_loss), BLUE),
        ("validation", series(|h| h.val_loss), RED),
    ] {
        chart
            .draw_series(LineSeries::new(data, color.stroke_width(2)))
            .map_err(|e| fail(path)(Box::new(e)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(path)(Box::new(e)))?;

    let mut chart = ChartBuilder::on(&right)
        .caption(
            format!("Validation (kept epoch {best_epoch})"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(48)
        .build_cartesian_2d(x_range, 0.0..1.0)
        .map_err(|e| fail(path)(Box::new(e)))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| fail(path)(Box::new(e)))?;
    for (name, data, color) in [
        ("accuracy", series(|h| h.val_accuracy), GREEN),
        ("macro-F1", series(|h| h.val_macro_f1), MAGENTA),
    ] {
        chart
            .draw_series(LineSeries::new(data, color.stroke_width(2)))
            .map_err(|e| fail(path)(Box::new(e)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(best_epoch as f64, 0.0), (best_epoch as f64, 1.0)],
            BLACK.mix(0.4),
        )))
        .map_err(|e| fail(path)(Box::new(e)))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(path)(Box::new(e)))?;
    root.present().map_err(|e| fail(path)(Box::new(e)))?;
    Ok(())
}

/// Confusion matrix: rows are true labels, columns predictions; cells shaded by row share.
pub fn confusion_matrix(metrics: &Metrics, path: &Path) -> Result<()> {
    let k = metrics.confusion.len();
    let cell = 110i32;
    let (x0, y0) = (130i32, 60i32);
    let size = (x0 + cell * k as i32 + 20, y0 + cell * k as i32 + 50);
    let root = SVGBackend::new(path, (size.0 as u32, size.1 as u32)).into_drawing_area();
    let draw = |r: Result<(), DrawingAreaErrorKind<_>>| r.map_err(|e| fail(path)(Box::new(e)));
    draw(root.fill(&WHITE))?;
    let title = format!(
        "Validation: accuracy {:.3}, macro-F1 {:.3}",
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
