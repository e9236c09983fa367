//! `bench --backend webgpu` (the `webgpu` feature): the model on Burn's WebGPU backend natively.
//! wgpu runs the WGSL kernels the page's WebGPU module runs, on Vulkan (or Metal, DX12): on
//! Mesa's lavapipe where there is no GPU, which checks correctness and counts kernels, and on a
//! real GPU for the timings (`scripts/gpu-bench.sh`). Prints the first classification after
//! load (shader compilation and, with `autotune`, tuning), the warm-up over the caption-length
//! buckets, warm latency per stage, kernels dispatched and compiled per classification, and the
//! largest difference from the CPU backend's fused probabilities on the same pairs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use burn::prelude::*;
use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};
use cubecl_runtime::logging::{LaunchObservation, LaunchObserver};
use mvsa_model::{Classifier, Pair, Prediction};

/// Kernels launched while an observation is installed (CubeCL calls this on every launch).
#[derive(Default)]
struct Launches(AtomicUsize);

impl LaunchObserver for Launches {
    fn launched(&self, _kernel: &'static str) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Kernels compiled so far: CubeCL's compilation log, routed to the `log` crate and counted
/// here (other crates' warnings still reach stderr).
static COMPILED: AtomicUsize = AtomicUsize::new(0);

struct CompileCounter;

impl log::Log for CompileCounter {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.target().starts_with("cubecl::compilation") || meta.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if record.target().starts_with("cubecl::compilation") {
            COMPILED.fetch_add(1, Ordering::Relaxed);
        } else if record.level() <= log::Level::Warn {
            eprintln!("{}: {}", record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Ask CubeCL to log each compilation (by name) to the `log` crate; before any device exists.
fn count_compilations() -> Result<()> {
    let config: CubeClRuntimeConfig = serde_json::from_value(serde_json::json!({
        "compilation": { "logger": { "level": "basic", "log": "info" } }
    }))?;
    ensure!(
        CubeClRuntimeConfig::try_set(config),
        "CubeCL's config was read before the bench could set it"
    );
    log::set_logger(&CompileCounter).map_err(|e| anyhow!("{e}"))?;
    log::set_max_level(log::LevelFilter::Info);
    Ok(())
}

/// Kernels compiled so far. CubeCL logs from a background thread: give it a moment.
fn compiled() -> usize {
    std::thread::sleep(Duration::from_millis(100));
    COMPILED.load(Ordering::Relaxed)
}

/// `f`'s result, its milliseconds, and the kernels compiled meanwhile.
fn measured<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64, usize)> {
    let before = compiled();
    let (value, ms) = timed(f)?;
    Ok((value, ms, compiled() - before))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn pair((image, caption): &(Vec<u8>, String)) -> Pair<'_> {
    Pair {
        image: Some(image),
        caption: Some(caption),
    }
}

fn classify(classifier: &Classifier, p: &(Vec<u8>, String)) -> Result<Prediction> {
    let mut predictions = classifier.classify(&[pair(p)])?;
    predictions.pop().context("no prediction came back")
}

/// The model folder `model` on WebGPU against the CPU backend, on `pairs` one at a time.
pub fn run(model: &std::path::Path, pairs: &[(Vec<u8>, String)]) -> Result<()> {
    ensure!(!pairs.is_empty(), "no pairs to classify");
    count_compilations()?;
    let (device, setup) = Device::wgpu_options().init_with_setup().context(
        "wgpu found no usable adapter (on Linux: a Vulkan driver, e.g. mesa-vulkan-drivers)",
    )?;
    let info = setup.adapter.get_info();
    println!(
        "webgpu adapter: {} ({:?}, {:?}; driver {} {}); features: fusion {}, autotune {}",
        info.name,
        info.device_type,
        info.backend,
        info.driver,
        info.driver_info,
        cfg!(feature = "fusion"),
        cfg!(feature = "autotune"),
    );
    let cpu = Classifier::load(model, &Device::flex())?;
    let (gpu, load_ms, _) =
        measured(|| Ok(Classifier::load(model, &device)?.with_length_buckets()))?;
    // The first classification after load, cold: every kernel it needs is compiled now.
    let (_, first_ms, first_compiled) = measured(|| classify(&gpu, &pairs[0]))?;
    // What the page does at load instead: one input per caption-length bucket.
    let inputs = gpu.warm_up_inputs()?;
    let (_, warmup_ms, warmup_compiled) = measured(|| {
        inputs
            .iter()
            .try_for_each(|x| gpu.run(std::slice::from_ref(x)).map(drop))
            .map_err(anyhow::Error::from)
    })?;
    // Warm: each pair alone, as the page classifies, and on the CPU backend for comparison.
    let (mut gpu_ms, mut cpu_ms, mut max_abs_diff) = (Vec::new(), Vec::new(), 0f32);
    let (_, _, warm_compiled) = measured(|| {
        for p in pairs {
            let (g, ms) = timed(|| classify(&gpu, p))?;
            gpu_ms.push(ms);
            let (c, ms) = timed(|| classify(&cpu, p))?;
            cpu_ms.push(ms);
            for (a, b) in g.scores.fused.iter().zip(&c.scores.fused) {
                max_abs_diff = max_abs_diff.max((a - b).abs());
            }
        }
        Ok(())
    })?;
    let launches = Arc::new(Launches::default());
    {
        let _watching = LaunchObservation::new(launches.clone());
        classify(&gpu, &pairs[0])?;
    }
    let dispatches = launches.0.load(Ordering::Relaxed);
    let stages: Vec<[f64; 4]> = pairs
        .iter()
        .map(|p| stages(&gpu, p))
        .collect::<Result<_>>()?;
    let stage = |i: usize| median(stages.iter().map(|s| s[i]).collect());
    println!(
        "webgpu load: {load_ms:.0} ms; first classification {first_ms:.0} ms ({first_compiled} kernels compiled); \
         warm-up over {} caption lengths {warmup_ms:.0} ms ({warmup_compiled} compiled)",
        inputs.len()
    );
    println!(
        "webgpu warm, {} pairs one at a time: median {:.2} ms (CPU backend {:.2} ms); {warm_compiled} kernels compiled after the warm-up",
        pairs.len(),
        median(gpu_ms.clone()),
        median(cpu_ms)
    );
    println!(
        "webgpu stages (median): preprocessing {:.2} ms, image encoder {:.2} ms, text encoder {:.2} ms, heads {:.2} ms",
        stage(0),
        stage(1),
        stage(2),
        stage(3)
    );
    println!(
        "webgpu: warm_ms={:.3} first_ms={first_ms:.1} dispatches={dispatches} max_abs_diff={max_abs_diff:.3e}",
        median(gpu_ms)
    );
    Ok(())
}

/// `f`'s result and its milliseconds (no pause for the compilation count).
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let started = Instant::now();
    let value = f()?;
    Ok((value, started.elapsed().as_secs_f64() * 1e3))
}

/// One classification stage by stage, each read back before the next starts (milliseconds):
/// preprocessing, image encoder, text encoder, heads.
fn stages(classifier: &Classifier, p: &(Vec<u8>, String)) -> Result<[f64; 4]> {
    let mut clock = Instant::now();
    let mut lap = || {
        let ms = clock.elapsed().as_secs_f64() * 1e3;
        clock = Instant::now();
        ms
    };
    let prepared = classifier.prepare(pair(p))?;
    let preprocess = lap();
    let (images, tokens) = classifier.inputs(&[&prepared]);
    let model = classifier.model();
    let image = model.encode(images, None).0.map(wait);
    let image_encoder = lap();
    let text = model.encode(None, tokens).1.map(wait);
    let text_encoder = lap();
    model.heads(image, text)?.probabilities().read()?;
    Ok([preprocess, image_encoder, text_encoder, lap()])
}

/// `t` once the device has computed it (a read back waits for the queue).
fn wait(t: Tensor<2>) -> Tensor<2> {
    let _ = t.clone().into_data();
    t
}
