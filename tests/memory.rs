//! Peak memory of reading the largest pictures the preprocessing accepts, counted by a global
//! allocator: each must stay under `BOUND` above what was allocated before (the page's wasm
//! memory grows by the same allocations, and never shrinks). One test in this binary, so no
//! other test's allocations are counted with it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use image::{DynamicImage, ImageEncoder, RgbImage, codecs::png::PngEncoder};
use jpeg_encoder::{ColorType, Encoder};
use mvsa_model::config::ImageBranchConfig;
use mvsa_model::preprocess::{ImagePreprocessor, MAX_FILE_BYTES};

/// What docs/testing.md promises: at most this much above the loaded model for any accepted picture.
const BOUND: usize = 100 << 20;

/// The system allocator, counting the bytes live now and the most live since `reset`. (A few
/// lines written here: the crates that do this carry more than this test needs.)
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, size) };
        if !q.is_null() {
            // Counted as a new block beside the old one, as a moving realloc needs.
            grew(size);
            LIVE.fetch_sub(layout.size(), Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes `f` had allocated at once, above what was live when it started.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE.load(Relaxed);
    PEAK.store(before, Relaxed);
    let out = f();
    (out, PEAK.load(Relaxed) - before)
}

/// A photo-like picture: one textured row, shifted a little on each line (copies, which are
/// fast in this unoptimised test crate where per-pixel code is not).
fn scene(width: u32, height: u32) -> RgbImage {
    let (width, height) = (width as usize, height as usize);
    let row: Vec<u8> = (0..(width + 97) * 3)
        .map(|i| ((i / 3) ^ (i % 3 * 85) ^ (i / 61)) as u8)
        .collect();
    let mut pixels = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        let start = (y % 97) * 3;
        pixels.extend_from_slice(&row[start..start + width * 3]);
    }
    RgbImage::from_raw(width as u32, height as u32, pixels).unwrap()
}

fn jpeg(width: u32, height: u32, progressive: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, 85);
    encoder.set_progressive(progressive);
    let pixels = scene(width, height);
    (encoder.encode(&pixels, width as u16, height as u16, ColorType::Rgb)).unwrap();
    out
}

fn png_rgba(width: u32, height: u32) -> Vec<u8> {
    let rgba = DynamicImage::ImageRgb8(scene(width, height)).into_rgba8();
    let mut out = Vec::new();
    let encoder = PngEncoder::new(&mut out);
    (encoder.write_image(&rgba, width, height, image::ExtendedColorType::Rgba8)).unwrap();
    out
}

const MIB: f64 = (1 << 20) as f64;

#[test]
fn the_largest_accepted_pictures_stay_under_the_memory_bound() {
    let config = ImageBranchConfig::mobilenet_v2().preprocess;
    let side = config.max_side;
    let size = config.size;
    let pre = ImagePreprocessor::new(config);
    let accepted = [
        ("8000x8000 baseline JPEG", jpeg(8000, 8000, false)),
        ("panorama too narrow to reduce", jpeg(side, 1000, false)),
        ("10 MP progressive JPEG", jpeg(3872, 2582, true)),
        ("3500x2900 RGBA PNG", png_rgba(3500, 2900)),
    ];
    for (what, bytes) in &accepted {
        // The file is counted too: the page copies it into the wasm memory to decode it.
        let (input, peak) = peak_of(|| pre.preprocess(&bytes.clone()));
        let input = input.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(input.len(), 3 * size * size, "{what}");
        let file = bytes.len() as f64 / MIB;
        println!(
            "{what}: {file:.1} MiB file, peak {:.1} MiB with it",
            peak as f64 / MIB
        );
        assert!(peak < BOUND, "{what}: {:.1} MiB at peak", peak as f64 / MIB);
    }
    // Over the bounds: refused, in words, before the memory is spent.
    let refused = [
        ("progressive", jpeg(4000, 3000, true), "progressive JPEG"),
        ("needs more than", png_rgba(3700, 3000), "needs more than"),
    ];
    for (what, bytes, says) in &refused {
        let (result, peak) = peak_of(|| pre.decode(bytes));
        let message = result.expect_err(what).to_string();
        assert!(message.contains(says), "{what}: {message}");
        assert!(
            peak < 4 << 20,
            "{what}: {:.1} MiB spent refusing it",
            peak as f64 / MIB
        );
    }
    let mut big = jpeg(64, 64, false);
    big.resize(MAX_FILE_BYTES + 1, 0);
    let message = pre.decode(&big).expect_err("file size").to_string();
    assert!(message.contains("pictures up to 32 MB"), "{message}");
}
