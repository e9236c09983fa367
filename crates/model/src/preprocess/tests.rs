use std::borrow::Cow;
use std::io::Cursor;

use image::{DynamicImage, GenericImageView, ImageFormat, RgbImage};

use super::*;
use crate::config::{ImageBranchConfig, ImagePreprocessing};
use crate::error::Error;

#[test]
fn caption_decoding_keeps_every_byte() {
    // Valid UTF-8 with an emoji stays as it is.
    assert_eq!(decode_caption("Café 😀\r\n".as_bytes()), "Café 😀");
    // Latin-1 / Windows-1252 bytes: é (0xE9), the euro sign (0x80), curly quotes.
    let raw = b"caf\xe9 \x80 \x93quoted\x94";
    assert!(std::str::from_utf8(std::hint::black_box(raw)).is_err());
    assert_eq!(decode_caption(raw), "café € “quoted”");
    // A mix: valid UTF-8 emoji next to a stray Latin-1 byte keeps both.
    let mut mixed = "hi 😀 ".as_bytes().to_vec();
    mixed.push(0xfc); // ü
    assert_eq!(decode_caption(&mixed), "hi 😀 ü");
    assert_eq!(decode_caption(b"\xef\xbb\xbfbom"), "bom");
}

#[test]
fn captions_that_are_not_utf8_are_read_as_gbk_first() {
    // Real captions of the data set (GBK, the Chinese Windows code page): "“" and "…".
    assert_eq!(
        decode_caption(b"\xa1\xb0@Chris_Smoove: I pulled this beast! #Retw"),
        "“@Chris_Smoove: I pulled this beast! #Retw"
    );
    assert_eq!(
        decode_caption(b"2008 ford f 250 diesel 4 x\xa1\xad \r\n"),
        "2008 ford f 250 diesel 4 x…"
    );
    let fixture = include_bytes!("../../../../tests/fixtures/mini/data/4784.txt");
    assert!(
        decode_caption(fixture).starts_with("友達にも教えてあげよう！"),
        "{}",
        decode_caption(fixture)
    );
    // Not valid GBK either (a lead byte with no trail): Windows-1252 byte by byte.
    assert_eq!(decode_caption(b"na\xefve caf\xe9"), "naïve café");
}

#[test]
fn emoji_are_spelled_out() {
    assert_eq!(spell_emoji("plain ascii #tag"), "plain ascii #tag");
    assert!(matches!(spell_emoji("plain"), Cow::Borrowed(_)));
    let sad = spell_emoji("so sad 😭💔");
    assert_eq!(sad, "so sad  loudly crying face  broken heart ");
    // Skin tones are left out; flags and other sequences are one emoji each.
    assert_eq!(spell_emoji("👍🏽"), " thumbs up ");
    // Untoned emoji with a qualifier keep it; a tone goes, the rest stays.
    assert_eq!(spell_emoji("👱"), " person: blond hair ");
    assert_eq!(spell_emoji("👱🏿"), " person: blond hair ");
    assert_eq!(spell_emoji("🇫🇷!"), " flag: France !");
    assert_eq!(spell_emoji("❤️ café"), " red heart  café");
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 255 / width.max(1)) as u8,
            (y * 255 / height.max(1)) as u8,
            128,
        ])
    });
    let mut bytes = Vec::new();
    DynamicImage::ImageRgb8(image)
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

#[test]
fn image_preprocessing_shapes_and_values() {
    let config = ImageBranchConfig::scratch(32).preprocess;
    let pre = ImagePreprocessor::new(config.clone());
    // A wide picture: fill the square, centre-crop.
    let stored = pre.load(&png(200, 100)).unwrap();
    assert_eq!(
        stored.dimensions(),
        (config.resize as u32, config.resize as u32)
    );
    let input = pre.center(&stored);
    assert_eq!(input.len(), 3 * config.size * config.size);
    // Blue channel is constant 128 → (128/255 - mean) / std everywhere.
    let blue = (128.0 / 255.0 - config.mean[2]) / config.std[2];
    let plane = config.size * config.size;
    assert!(input[2 * plane..].iter().all(|v| (v - blue).abs() < 0.02));
    // Red grows left to right, green top to bottom.
    assert!(input[0] < input[config.size - 1]);
    assert!(input[plane] < input[plane + (config.size - 1) * config.size]);
    // A mirrored crop reverses each row.
    let flipped = pre.crop(&stored, 4, 4, true);
    let straight = pre.crop(&stored, 4, 4, false);
    assert_eq!(flipped[0], straight[config.size - 1]);
    // Tiny pictures are scaled up.
    assert_eq!(
        pre.load(&png(48, 48)).unwrap().width(),
        config.resize as u32
    );
}

#[test]
fn large_jpegs_are_decoded_reduced_and_look_the_same() {
    let pre = ImagePreprocessor::new(ImageBranchConfig::mobilenet_v2().preprocess);
    let picture = DynamicImage::ImageRgb8(RgbImage::from_fn(2560, 1920, |x, y| {
        image::Rgb([(x / 10) as u8, (y / 8) as u8, ((x + y) / 18) as u8])
    }));
    let mut bytes = Vec::new();
    (picture.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Jpeg)).unwrap();
    // The short side 1920 halves to 960 (a quarter, 480, would be under 2 x 256).
    assert_eq!(pre.dimensions(&bytes).unwrap(), (2560, 1920));
    let reduced = pre.decode(&bytes).unwrap();
    assert_eq!(reduced.dimensions(), (1280, 960));
    // What the model sees barely differs from resizing the full picture.
    let full = pre.resize(image::load_from_memory(&bytes).unwrap());
    let seen = pre.resize(reduced);
    let diff = full
        .pixels()
        .zip(seen.pixels())
        .flat_map(|(a, b)| (0..3).map(move |c| (a[c] as f32 - b[c] as f32).abs()));
    let mean = diff.sum::<f32>() / (3 * full.width() * full.height()) as f32;
    assert!(mean < 3.0, "mean difference {mean} of 255");
    // Pictures of up to 4 megapixels (all the data set's) are decoded at full size.
    let mut small = Vec::new();
    let photo = DynamicImage::ImageRgb8(RgbImage::new(2400, 1600));
    (photo.write_to(&mut Cursor::new(&mut small), ImageFormat::Jpeg)).unwrap();
    assert_eq!(pre.decode(&small).unwrap().dimensions(), (2400, 1600));
}

#[test]
fn bad_images_are_errors_not_panics() {
    let config = ImagePreprocessing {
        max_side: 1000,
        ..ImageBranchConfig::scratch(32).preprocess
    };
    let pre = ImagePreprocessor::new(config);
    assert!(matches!(pre.decode(b"not an image"), Err(Error::Image(_))));
    let mut truncated = png(64, 64);
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(pre.decode(&truncated), Err(Error::Image(_))));
    assert!(matches!(
        pre.decode(&png(1001, 10)),
        Err(Error::ImageTooLarge { width: 1001, .. })
    ));
    // A 10,000 x 10,000 picture is within the side limit but refused before it is decoded.
    let huge = include_bytes!("../../../../tests/fixtures/huge-10000x10000.png");
    let pre = ImagePreprocessor::new(ImageBranchConfig::mobilenet_v2().preprocess);
    match pre.decode(huge) {
        Err(Error::Image(message)) => assert!(message.contains("10000x10000"), "{message}"),
        other => panic!("expected a clear error, got {other:?}"),
    }
}
